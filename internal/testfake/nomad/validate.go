package nomad

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// multiError is go-multierror's list, formatted as Nomad's messages are.
type multiError []error

func (m multiError) Error() string {
	if len(m) == 1 {
		return fmt.Sprintf("1 error occurred:\n\t* %s\n\n", m[0])
	}
	points := make([]string, len(m))
	for i, err := range m {
		points[i] = "* " + err.Error()
	}
	return fmt.Sprintf("%d errors occurred:\n\t%s\n\n", len(m), strings.Join(points, "\n\t"))
}

func (m multiError) orNil() error {
	if len(m) == 0 {
		return nil
	}
	return m
}

// validationErrors flattens a validation error into its leaf messages,
// as JobValidateResponse.ValidationErrors lists them.
func validationErrors(err error) []string {
	var m multiError
	if !errors.As(err, &m) {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range m {
		var w *wrapped
		if errors.As(e, &w) {
			for _, leaf := range validationErrors(w.err) {
				out = append(out, w.prefix+": "+leaf)
			}
			continue
		}
		out = append(out, validationErrors(e)...)
	}
	return out
}

// wrapped is "<prefix> validation failed: <errors>".
type wrapped struct {
	prefix string
	err    error
}

func (w *wrapped) Error() string { return w.prefix + " validation failed: " + w.err.Error() }

// warningsText is Nomad's MergeMultierrorWarnings.
func warningsText(ws []error) string {
	if len(ws) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d warning(s):\n", len(ws))
	for _, w := range ws {
		fmt.Fprintf(&b, "\n* %s", w)
	}
	return b.String()
}

// validateJobLocked is the part of Nomad's Job.Validate and job
// registration checks a job registered through the API can get wrong,
// with the warnings registration returns.
func (s *Server) validateJobLocked(job *api.Job) ([]error, error) {
	var errs multiError
	if job.ID == nil || *job.ID == "" {
		errs = append(errs, errors.New("Missing job ID"))
	}
	if ns := *job.Namespace; s.namespaces[ns] == nil {
		return nil, fmt.Errorf("job %q is in nonexistent namespace %q", deref(job.ID), ns)
	}
	if !slices.Contains(jobTypes, deref(job.Type)) {
		errs = append(errs, fmt.Errorf("job type %q is not supported by the fake Nomad", deref(job.Type)))
	}
	if len(job.TaskGroups) == 0 {
		errs = append(errs, errors.New("Missing job task groups"))
	}
	for i, c := range job.Constraints {
		if err := validateConstraint(c); err != nil {
			errs = append(errs, &wrapped{fmt.Sprintf("Constraint %d", i+1), err})
		}
	}
	if p := job.ParameterizedJob; p != nil {
		switch p.Payload {
		case "optional", "required", "forbidden":
		default:
			errs = append(errs, fmt.Errorf("Unknown payload requirement: %q", p.Payload))
		}
		for _, k := range p.MetaRequired {
			if slices.Contains(p.MetaOptional, k) {
				errs = append(errs, fmt.Errorf("Required and optional meta keys should be disjoint. Following keys exist in both: [%s]", k))
			}
		}
	}
	for _, tg := range job.TaskGroups {
		if err := validateGroup(tg); err != nil {
			errs = append(errs, &wrapped{"Task group " + deref(tg.Name), err})
		}
	}
	var warnings []error
	if !s.scheduler.MemoryOversubscriptionEnabled {
		for _, tg := range job.TaskGroups {
			for _, t := range tg.Tasks {
				if t.Resources != nil && t.Resources.MemoryMaxMB != nil && *t.Resources.MemoryMaxMB != 0 {
					warnings = append(warnings, fmt.Errorf("Memory oversubscription is not enabled; Task \"%v.%v\" memory_max value will be ignored. Update the Scheduler Configuration to allow oversubscription.", *tg.Name, t.Name))
				}
			}
		}
	}
	return warnings, errs.orNil()
}

func validateGroup(tg *api.TaskGroup) error {
	var errs multiError
	for i, c := range tg.Constraints {
		if err := validateConstraint(c); err != nil {
			errs = append(errs, &wrapped{fmt.Sprintf("Constraint %d", i+1), err})
		}
	}
	for name, v := range tg.Volumes {
		switch {
		case v == nil:
		case v.Type != "host" && v.Type != "csi":
			errs = append(errs, fmt.Errorf("Volume %s has unrecognised type %s", name, v.Type))
		case v.Source == "":
			errs = append(errs, fmt.Errorf("Volume %s has an empty source", name))
		}
	}
	if len(tg.Tasks) == 0 {
		errs = append(errs, errors.New("Missing tasks for task group"))
	}
	for _, t := range tg.Tasks {
		if err := validateTask(tg, t); err != nil {
			errs = append(errs, &wrapped{"Task " + t.Name, err})
		}
	}
	return errs.orNil()
}

func validateTask(tg *api.TaskGroup, t *api.Task) error {
	var errs multiError
	if t.Driver == "" {
		errs = append(errs, errors.New("Missing task driver"))
	}
	if t.DispatchPayload != nil && escapes(t.DispatchPayload.File) {
		errs = append(errs, errors.New("dispatch_payload: destination escapes allocation directory"))
	}
	if err := validateResources(t.Resources); err != nil {
		errs = append(errs, err)
	}
	for i, c := range t.Constraints {
		if err := validateConstraint(c); err != nil {
			errs = append(errs, &wrapped{fmt.Sprintf("Constraint %d", i+1), err})
		}
	}
	for i, vm := range t.VolumeMounts {
		name := deref(vm.Volume)
		if tg.Volumes[name] == nil {
			errs = append(errs, fmt.Errorf("Volume Mount (%d) references undefined volume %s", i, name))
		}
	}
	return errs.orNil()
}

// validateConstraint is Nomad's Constraint.Validate.
func validateConstraint(c *api.Constraint) error {
	var errs multiError
	if c.Operand == "" {
		errs = append(errs, errors.New("Missing constraint operand"))
	}
	needLeft := true
	switch c.Operand {
	case api.ConstraintDistinctHosts:
		needLeft = false
	case api.ConstraintSetContainsAll, api.ConstraintSetContainsAny, api.ConstraintSetContains:
		if c.RTarget == "" {
			errs = append(errs, errors.New("Set contains constraint requires an RTarget"))
		}
	case api.ConstraintRegex:
		if _, err := regexp.Compile(c.RTarget); err != nil {
			errs = append(errs, fmt.Errorf("Regular expression failed to compile: %v", err))
		}
	case api.ConstraintVersion, api.ConstraintSemver:
		if strings.TrimSpace(c.RTarget) == "" {
			errs = append(errs, errors.New("Version constraint is invalid: Malformed constraint"))
		}
	case api.ConstraintDistinctProperty:
		if c.RTarget != "" {
			n, err := strconv.ParseUint(c.RTarget, 10, 64)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("Failed to convert RTarget %q to uint64: %v", c.RTarget, err))
			case n < 1:
				errs = append(errs, fmt.Errorf("Distinct Property must have an allowed count of 1 or greater: %d < 1", n))
			}
		}
	case api.ConstraintAttributeIsSet, api.ConstraintAttributeIsNotSet:
		if c.RTarget != "" {
			errs = append(errs, fmt.Errorf("Operator %q does not support an RTarget", c.Operand))
		}
	case "=", "==", "is", "!=", "not", "<", "<=", ">", ">=":
		if c.RTarget == "" {
			errs = append(errs, fmt.Errorf("Operator %q requires an RTarget", c.Operand))
		}
	default:
		errs = append(errs, fmt.Errorf("Unknown constraint type %q", c.Operand))
	}
	if needLeft && c.LTarget == "" {
		errs = append(errs, errors.New("No LTarget provided but is required by constraint"))
	}
	return errs.orNil()
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
