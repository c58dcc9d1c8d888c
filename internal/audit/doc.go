// Package audit records every decision and lifecycle event of a session as
// one structured record per event, to a zap logger, the systemd journal, or
// both. The fields are documented in docs/audit.md.
package audit
