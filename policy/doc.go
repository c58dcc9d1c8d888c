// Package policy decides one spawn request: from the request, the user's
// allowlist and the session's state it returns either an allow carrying the
// resolved launch spec, or a deny with a code and a reason. It does no I/O,
// so every rule is table-tested.
package policy
