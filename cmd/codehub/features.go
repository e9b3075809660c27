package main

import (
	"time"

	"github.com/codehub-dev/codehub/internal/config"
	"github.com/hashicorp/go-hclog"
)

// The design's multi-user.features switches and scaling.auto-cleanup
// settings, and what each one turns on or off here:
//
//   - features.audit-logging: every audit sink (database, audit.file,
//     standard output); off, nothing is recorded and the gateway warns.
//   - features.usage-analytics: the stored usage history behind the admin
//     charts and GET /api/v1/admin/usage; off, usage is still measured, in
//     memory only, for quotas and the live metrics.
//   - features.metrics-export: "prometheus" serves /metrics; "none" does
//     not (whatever metrics.enabled says).
//   - features.admin-dashboard: the dashboard's pages; the admin API stays,
//     for automation.
//   - scaling.auto-cleanup.enabled: the sweep of expired and idle sessions
//     every expired-session-cleanup-interval, and the idle timeout of
//     idle-session-minutes.

// applyFeatures makes the features switches take effect on the settings
// they override. It runs once, right after loading.
func applyFeatures(cfg *config.Config) {
	if cfg.DeploymentMode != config.ModeMulti {
		return
	}
	if cfg.MultiUser.Features.MetricsExport == "none" {
		cfg.Metrics.Enabled = false
	}
}

// logFeatures tells the operator what the features switches leave out.
func logFeatures(cfg *config.Config, log hclog.Logger) {
	if cfg.DeploymentMode != config.ModeMulti {
		return
	}
	f := cfg.MultiUser.Features
	if !f.AuditLogging {
		log.Warn("multi-user.features.audit-logging is off: no audit log is kept (not in the database, audit.file or on standard output); sign-ins, user changes and admin actions leave no trace")
	}
	if !f.UsageAnalytics {
		log.Info("multi-user.features.usage-analytics is off: usage is measured for quotas and metrics but no history is kept")
	}
	if f.MetricsExport == "none" {
		log.Info("multi-user.features.metrics-export is \"none\": /metrics is not served")
	}
	if !f.AdminDashboard {
		log.Info("multi-user.features.admin-dashboard is off: the dashboard's pages are not served; the admin API stays")
	}
	if !cfg.MultiUser.Scaling.AutoCleanup.Enabled {
		log.Info("multi-user.scaling.auto-cleanup is off: expired and idle sessions are not swept")
	}
}

// sessionIdleTimeout is how long a session may go unused: the session's
// own idle-timeout when set, else the design's
// scaling.auto-cleanup.idle-session-minutes while auto-cleanup is on.
// An open editor counts as use (identity.Service.SessionActive).
func sessionIdleTimeout(cfg *config.Config) time.Duration {
	if cfg.SourceOf("multi-user.auth.session.idle-timeout").String() != "default" {
		return cfg.MultiUser.Auth.Session.IdleTimeout.D()
	}
	ac := cfg.MultiUser.Scaling.AutoCleanup
	if !ac.Enabled || ac.IdleSessionMinutes <= 0 {
		return 0
	}
	return time.Duration(ac.IdleSessionMinutes) * time.Minute
}
