// Package quota is the one type for a cell's resource limits (memory, CPU,
// pids): parsed from the allowlist's strings and numbers, validated, and
// rendered compactly for logs and the audit trail.
package quota
