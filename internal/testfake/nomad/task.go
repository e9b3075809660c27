package nomad

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/codehub-dev/codehub/internal/procenv"
	"github.com/hashicorp/nomad/api"
)

// taskRun is a task's current process. Guarded by Server.mu.
type taskRun struct {
	cmd *exec.Cmd
	oom bool // killed by OOMKill
	// restartRequested is set by the restart API; restart wakes the
	// task's runner to do it.
	restartRequested bool
	restart          chan struct{}
}

func (tr *taskRun) signalRestart() {
	select {
	case tr.restart <- struct{}{}:
	default:
	}
}

// AllocDir returns the directory of an allocation on the fake node
// (holding alloc/ and one directory per task), "" if unknown.
func (s *Server) AllocDir(allocID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ar := s.allocs[allocID]; ar != nil {
		return ar.dir
	}
	return ""
}

// TaskPID returns the pid of a running task, 0 if it does not run.
func (s *Server) TaskPID(allocID, task string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ar := s.allocs[allocID]; ar != nil {
		if tr := ar.tasks[task]; tr != nil && tr.cmd.Process != nil && ar.alloc.TaskStates[task].State == "running" {
			return tr.cmd.Process.Pid
		}
	}
	return 0
}

// OOMKill kills a running task as the kernel's OOM killer would: its
// Terminated event says "OOM Killed".
func (s *Server) OOMKill(allocID, task string) error { return s.kill(allocID, task, true) }

// KillTask kills a running task with SIGKILL, as a crash would.
func (s *Server) KillTask(allocID, task string) error { return s.kill(allocID, task, false) }

func (s *Server) kill(allocID, task string, oom bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar := s.allocs[allocID]
	if ar == nil || ar.tasks[task] == nil || ar.alloc.TaskStates[task].State != "running" {
		return fmt.Errorf("task %s of allocation %s does not run", task, allocID)
	}
	tr := ar.tasks[task]
	tr.oom = oom
	return syscall.Kill(-tr.cmd.Process.Pid, syscall.SIGKILL)
}

// stopAlloc stops an allocation's tasks and waits for them to end.
func (s *Server) stopAlloc(ar *allocRun, reason string) {
	s.log.Debug("stopping allocation", "alloc", ar.alloc.ID, "reason", reason)
	ar.signalStop()
}

func findGroup(job *api.Job, name string) *api.TaskGroup {
	for _, tg := range job.TaskGroups {
		if *tg.Name == name {
			return tg
		}
	}
	return nil
}

// runAlloc is the client's work on an allocation: every task of its group
// runs until it ends or the allocation is stopped.
func (s *Server) runAlloc(ar *allocRun) {
	s.mu.Lock()
	job := clone(ar.alloc.Job)
	tg := findGroup(job, ar.alloc.TaskGroup)
	ar.dir = filepath.Join(s.opts.Dir, ar.alloc.ID)
	s.mu.Unlock()
	done := make(chan struct{}, len(tg.Tasks))
	for _, t := range tg.Tasks {
		go func() {
			s.runTask(ar, job, tg, t)
			done <- struct{}{}
		}()
	}
	for range tg.Tasks {
		<-done
	}
}

// runTask runs one task: its directory, payload and templates once, then
// its process, again after each failure its restart policy allows (or a
// restart asked for), until it ends or the allocation stops.
func (s *Server) runTask(ar *allocRun, job *api.Job, tg *api.TaskGroup, t *api.Task) {
	name := t.Name
	ev := func(e *api.TaskEvent, state string, failed bool) {
		s.mu.Lock()
		s.taskEventLocked(ar, name, e, state, failed)
		s.mu.Unlock()
	}
	fail := func(typ, msg string) {
		e := event(typ, msg)
		e.FailsTask = true
		switch typ {
		case api.TaskDriverFailure:
			e.DriverError = msg
		case api.TaskSetupFailure:
			e.SetupError = msg
		case api.TaskFailedValidation:
			e.ValidationError = msg
		}
		ev(e, "", false)
		ev(event(api.TaskNotRestarting, "Error was unrecoverable"), "dead", true)
		ar.signalStop() // siblings stop too
	}
	stopped := func() bool {
		select {
		case <-ar.stop:
			ev(event(api.TaskKilled, "Task successfully killed"), "dead", false)
			return true
		default:
			return false
		}
	}

	allocDir := filepath.Join(ar.dir, "alloc")
	taskDir := filepath.Join(ar.dir, name)
	for _, d := range []string{
		filepath.Join(allocDir, "logs"), filepath.Join(allocDir, "tmp"), filepath.Join(allocDir, "data"),
		filepath.Join(taskDir, "local"), filepath.Join(taskDir, "secrets"), filepath.Join(taskDir, "tmp"),
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			fail(api.TaskSetupFailure, "failed to build task directory: "+err.Error())
			return
		}
	}
	ev(event(api.TaskSetup, "Building Task Directory"), "", false)
	if stopped() {
		return
	}

	s.mu.Lock()
	vars := s.taskVarsLocked(ar, job, tg, t, allocDir, taskDir)
	failDriver, delay := s.failDriver, s.startDelay
	s.mu.Unlock()

	if dp := t.DispatchPayload; dp != nil && dp.File != "" && len(job.Payload) > 0 {
		// As Nomad's dispatch hook: mode 0777 less the client's umask.
		dst := filepath.Join(taskDir, "local", dp.File)
		if err := os.MkdirAll(filepath.Dir(dst), 0o777); err != nil {
			fail(api.TaskSetupFailure, "failed to write dispatch payload: "+err.Error())
			return
		}
		if err := os.WriteFile(dst, job.Payload, 0o777); err != nil {
			fail(api.TaskSetupFailure, "failed to write dispatch payload: "+err.Error())
			return
		}
	}
	for _, tmpl := range t.Templates {
		env, err := renderTemplate(ar.dir, taskDir, tmpl, vars)
		if err != nil {
			fail(api.TaskSetupFailure, "Template failed: "+err.Error())
			return
		}
		for k, v := range env {
			vars[k] = v
		}
	}
	if err := s.validateDriverConfig(t); err != nil {
		fail(api.TaskFailedValidation, "failed to parse config: "+err.Error())
		return
	}
	sec, err := s.driverSecurity(t)
	if err != nil {
		fail(api.TaskDriverFailure, "failed to launch command with executor: "+err.Error())
		return
	}
	if failDriver != nil {
		if err := failDriver(job, t); err != nil {
			fail(api.TaskDriverFailure, err.Error())
			return
		}
	}
	if delay > 0 {
		e := event(api.TaskDriverMessage, "Downloading image")
		e.DriverMessage = "Downloading image"
		ev(e, "", false)
		select {
		case <-time.After(delay):
		case <-ar.stop:
		}
	}
	policy := restartPolicy(job, tg)
	var restarts []time.Time // failures restarted within the policy's interval
	for {
		if stopped() {
			return
		}
		out := s.runProcess(ar, tg, t, vars, taskDir, allocDir, sec)
		switch {
		case out.startErr != nil:
			fail(api.TaskDriverFailure, "failed to launch command with executor: "+out.startErr.Error())
			return
		case out.killed:
			ev(event(api.TaskKilled, "Task successfully killed"), "dead", false)
			return
		case out.restart:
			// A restart asked for: at once, and not counted against the
			// policy.
			e := event(api.TaskRestarting, "Task restarting in 0s")
			e.RestartReason = "User requested task to restart"
			ev(e, "pending", false)
			continue
		case out.code == 0 && *job.Type != api.JobTypeService:
			ev(nil, "dead", false)
			return
		}
		now := time.Now()
		kept := restarts[:0]
		for _, at := range restarts {
			if now.Sub(at) < *policy.Interval {
				kept = append(kept, at)
			}
		}
		restarts = kept
		wait := *policy.Delay
		if len(restarts) >= *policy.Attempts {
			if *policy.Mode != api.RestartPolicyModeDelay || *policy.Attempts == 0 {
				why := fmt.Sprintf("Exceeded allowed attempts %d in interval %v and mode is \"fail\"", *policy.Attempts, *policy.Interval)
				if *policy.Attempts == 0 {
					why = "Policy allows no restarts"
				}
				ev(event(api.TaskNotRestarting, why), "dead", true)
				ar.signalStop()
				return
			}
			wait = max(wait, *policy.Interval-now.Sub(restarts[0]))
		}
		restarts = append(restarts, now)
		e := event(api.TaskRestarting, fmt.Sprintf("Task restarting in %s", wait))
		e.RestartReason, e.StartDelay = "Restart within policy", int64(wait)
		ev(e, "pending", false)
		select {
		case <-time.After(wait):
		case <-ar.stop:
		}
	}
}

// restartPolicy is the group's restart policy with Nomad's defaults.
func restartPolicy(job *api.Job, tg *api.TaskGroup) *api.RestartPolicy {
	p := &api.RestartPolicy{Attempts: new(3), Interval: new(24 * time.Hour), Delay: new(15 * time.Second), Mode: new(api.RestartPolicyModeFail)}
	if *job.Type == api.JobTypeService {
		p.Attempts, p.Interval, p.Delay = new(2), new(30*time.Minute), new(15*time.Second)
	}
	if r := tg.RestartPolicy; r != nil {
		if r.Attempts != nil {
			p.Attempts = r.Attempts
		}
		if r.Interval != nil {
			p.Interval = r.Interval
		}
		if r.Delay != nil {
			p.Delay = r.Delay
		}
		if r.Mode != nil {
			p.Mode = r.Mode
		}
	}
	return p
}

// processEnd is how a task's process ended.
type processEnd struct {
	startErr error
	killed   bool // the allocation was stopped
	restart  bool // a restart was asked for
	code     int
}

// runProcess starts the task's process, registers its services, and
// waits for it to end, to be stopped, or to be restarted.
func (s *Server) runProcess(ar *allocRun, tg *api.TaskGroup, t *api.Task, vars map[string]string, taskDir, allocDir string, sec *security) processEnd {
	name := t.Name
	command, _ := t.Config["command"].(string)
	command = interpolate(command, vars)
	var args []string
	if list, ok := t.Config["args"].([]any); ok {
		for _, a := range list {
			args = append(args, interpolate(fmt.Sprint(a), vars))
		}
	}
	if command == "" {
		return processEnd{startErr: errors.New("missing command")}
	}
	cmd := sec.command(command, args)
	cmd.Dir = taskDir
	cmd.Env = processEnv(s.opts.Env, vars)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err1 := os.OpenFile(filepath.Join(allocDir, "logs", name+".stdout.0"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	stderr, err2 := os.OpenFile(filepath.Join(allocDir, "logs", name+".stderr.0"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err := errors.Join(err1, err2); err != nil {
		return processEnd{startErr: fmt.Errorf("failed to open log files: %w", err)}
	}
	defer stdout.Close()
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	s.mu.Lock()
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return processEnd{startErr: err}
	}
	tr := ar.tasks[name]
	if tr == nil {
		tr = &taskRun{restart: make(chan struct{}, 1)}
		ar.tasks[name] = tr
	}
	tr.cmd, tr.oom, tr.restartRequested = cmd, false, false
	select {
	case <-tr.restart: // a request that came too late for the last run
	default:
	}
	s.taskEventLocked(ar, name, event(api.TaskStarted, "Task started by client"), "running", false)
	s.mu.Unlock()

	svcs := s.registerServices(ar, tg, t, vars, taskDir, cmd.Env)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var (
		waitErr          error
		killed, restart  bool
		interruptAndWait = func() {
			timeout := 5 * time.Second
			if t.KillTimeout != nil && *t.KillTimeout > 0 {
				timeout = *t.KillTimeout
			}
			sig := syscall.SIGINT
			if t.KillSignal == "SIGTERM" {
				sig = syscall.SIGTERM
			}
			_ = syscall.Kill(-cmd.Process.Pid, sig)
			select {
			case waitErr = <-exited:
			case <-time.After(timeout):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				waitErr = <-exited
			}
		}
	)
	select {
	case waitErr = <-exited:
	case <-ar.stop:
		killed = true
		timeout := 5 * time.Second
		if t.KillTimeout != nil && *t.KillTimeout > 0 {
			timeout = *t.KillTimeout
		}
		e := event(api.TaskKilling, fmt.Sprintf("Sent interrupt. Waiting %s before force killing", timeout))
		s.mu.Lock()
		s.taskEventLocked(ar, name, e, "", false)
		s.mu.Unlock()
		interruptAndWait()
	case <-tr.restart:
		restart = true
		interruptAndWait()
	}
	// Nomad ends a task's whole cgroup when its main process is gone: no
	// process the task started outlives it, whatever process group or
	// parent it ended up with.
	_, _ = procenv.Kill(context.Background(), procenv.AnyUID, "NOMAD_ALLOC_ID="+ar.alloc.ID, "NOMAD_TASK_NAME="+name)
	s.deregisterServices(svcs)
	s.mu.Lock()
	oom := tr.oom
	s.mu.Unlock()
	if killed && !oom {
		return processEnd{killed: true}
	}
	code, signal := 0, 0
	var exitErr *exec.ExitError
	if errors.As(waitErr, &exitErr) {
		code = exitErr.ExitCode()
		if st, ok := exitErr.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			signal = int(st.Signal())
			code = 128 + signal
		}
	}
	e := event(api.TaskTerminated, fmt.Sprintf("Exit Code: %d", code))
	e.ExitCode, e.Signal = code, signal
	e.Details = map[string]string{"exit_code": strconv.Itoa(code), "signal": strconv.Itoa(signal), "oom_killed": strconv.FormatBool(oom)}
	if oom {
		e.DisplayMessage = fmt.Sprintf("Exit Code: %d, Exit Message: \"OOM Killed\"", code)
		e.Message = "OOM Killed"
	}
	s.mu.Lock()
	s.taskEventLocked(ar, name, e, "", false)
	s.mu.Unlock()
	if restart {
		return processEnd{restart: true, code: code}
	}
	return processEnd{code: code}
}

// taskVarsLocked is the task's environment as Nomad builds it (NOMAD_*
// variables, meta, the task's env block interpolated), plus the node
// attributes interpolation knows.
func (s *Server) taskVarsLocked(ar *allocRun, job *api.Job, tg *api.TaskGroup, t *api.Task, allocDir, taskDir string) map[string]string {
	a := ar.alloc
	v := map[string]string{
		"NOMAD_ALLOC_DIR":      allocDir,
		"NOMAD_TASK_DIR":       filepath.Join(taskDir, "local"),
		"NOMAD_SECRETS_DIR":    filepath.Join(taskDir, "secrets"),
		"NOMAD_ALLOC_ID":       a.ID,
		"NOMAD_SHORT_ALLOC_ID": a.ID[:8],
		"NOMAD_ALLOC_NAME":     a.Name,
		"NOMAD_ALLOC_INDEX":    allocIndex(a.Name),
		"NOMAD_TASK_NAME":      t.Name,
		"NOMAD_GROUP_NAME":     *tg.Name,
		"NOMAD_JOB_ID":         *job.ID,
		"NOMAD_JOB_NAME":       *job.Name,
		"NOMAD_JOB_PARENT_ID":  *job.ParentID,
		"NOMAD_NAMESPACE":      *job.Namespace,
		"NOMAD_REGION":         s.opts.Region,
		"NOMAD_DC":             s.opts.Datacenter,
		"NOMAD_CPU_LIMIT":      strconv.FormatInt(a.AllocatedResources.Tasks[t.Name].Cpu.CpuShares, 10),
		"NOMAD_MEMORY_LIMIT":   strconv.FormatInt(a.AllocatedResources.Tasks[t.Name].Memory.MemoryMB, 10),
	}
	if m := a.AllocatedResources.Tasks[t.Name].Memory.MemoryMaxMB; m > 0 {
		v["NOMAD_MEMORY_MAX_LIMIT"] = strconv.FormatInt(m, 10)
	}
	for _, p := range a.AllocatedResources.Shared.Ports {
		port := strconv.Itoa(p.Value)
		addr := net.JoinHostPort(p.HostIP, port)
		v["NOMAD_PORT_"+p.Label] = port
		v["NOMAD_HOST_PORT_"+p.Label] = port
		v["NOMAD_ALLOC_PORT_"+p.Label] = strconv.Itoa(p.To)
		v["NOMAD_IP_"+p.Label] = p.HostIP
		v["NOMAD_HOST_IP_"+p.Label] = p.HostIP
		v["NOMAD_ADDR_"+p.Label] = addr
		v["NOMAD_HOST_ADDR_"+p.Label] = addr
	}
	for _, meta := range []map[string]string{job.Meta, tg.Meta, t.Meta} {
		for k, val := range meta {
			v["NOMAD_META_"+k] = val
			v["NOMAD_META_"+strings.ToUpper(k)] = val
		}
	}
	for _, k := range []string{"node.datacenter", "node.unique.name", "node.unique.id", "node.class", "node.region", "node.pool", "attr.kernel.name", "attr.cpu.arch", "attr.unique.hostname"} {
		v[k], _ = s.nodeAttr("${" + k + "}")
	}
	for k, val := range s.opts.NodeMeta {
		v["meta."+k] = val
	}
	keys := make([]string, 0, len(t.Env))
	for k := range t.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v[k] = interpolate(t.Env[k], v)
	}
	return v
}

func allocIndex(name string) string {
	i := strings.LastIndexByte(name, '[')
	if i < 0 {
		return "0"
	}
	return strings.TrimSuffix(name[i+1:], "]")
}

// processEnv is the process environment: the base, then the task's
// variables (node attributes, which are not valid names, left out).
func processEnv(base []string, vars map[string]string) []string {
	env := append([]string{}, base...)
	keys := make([]string, 0, len(vars))
	for k := range vars {
		if !strings.Contains(k, ".") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+vars[k])
	}
	return env
}

var interpRE = regexp.MustCompile(`\$\{([^{}]+)\}`)

// interpolate replaces ${name} with its value; unknown names stay, as in
// Nomad.
func interpolate(s string, vars map[string]string) string {
	return interpRE.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// inside reports whether p is within dir.
func inside(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// renderTemplate renders a template block as Nomad's template hook does,
// with the env and file functions (file sandboxed to the allocation
// directory; relative paths are taken from the task directory), perms,
// and env = true; it returns the variables an env template sets.
func renderTemplate(allocRoot, taskDir string, tmpl *api.Template, vars map[string]string) (map[string]string, error) {
	resolve := func(p string) (string, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(taskDir, p)
		}
		p = filepath.Clean(p)
		if !inside(allocRoot, p) {
			return "", fmt.Errorf("%q is outside of the allocation directory", p)
		}
		return p, nil
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	text := str(tmpl.EmbeddedTmpl)
	if src := str(tmpl.SourcePath); src != "" {
		p, err := resolve(interpolate(src, vars))
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		text = string(b)
	}
	left, right := str(tmpl.LeftDelim), str(tmpl.RightDelim)
	t, err := template.New("template").Delims(left, right).Option("missingkey=zero").Funcs(template.FuncMap{
		"env": func(k string) string { return vars[k] },
		"file": func(p string) (string, error) {
			rp, err := resolve(p)
			if err != nil {
				return "", err
			}
			b, err := os.ReadFile(rp)
			return string(b), err
		},
	}).Parse(text)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, nil); err != nil {
		return nil, err
	}
	dst, err := resolve(interpolate(str(tmpl.DestPath), vars))
	if err != nil {
		return nil, err
	}
	perm := uint64(0o644)
	if p := str(tmpl.Perms); p != "" {
		if perm, err = strconv.ParseUint(p, 8, 32); err != nil {
			return nil, fmt.Errorf("perms %q: %w", p, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(dst, buf.Bytes(), os.FileMode(perm)); err != nil {
		return nil, err
	}
	if err := os.Chmod(dst, os.FileMode(perm)); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 && tmpl.Uid != nil && tmpl.Gid != nil && *tmpl.Uid >= 0 {
		_ = os.Chown(dst, *tmpl.Uid, *tmpl.Gid)
	}
	if tmpl.Envvars == nil || !*tmpl.Envvars {
		return nil, nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(buf.String(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("env template: line %q is not KEY=VALUE", line)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}
