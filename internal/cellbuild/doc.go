// Package cellbuild compiles a cell from its Go source with the user's Go
// toolchain, offline, inside a bubblewrap sandbox without network, into a
// cache keyed by the sha256 of the source tree, the Go version and the build
// flags, so that unchanged source is never compiled twice.
//
// The sandbox sees the toolchain (GOROOT), the module's source and, for a
// module without a vendor directory, the module cache, all read-only; it can
// write only the output directory and a private GOCACHE. GOPROXY=off,
// GOFLAGS=-mod=vendor (or -mod=readonly), GOTOOLCHAIN=local and
// CGO_ENABLED=0 keep the go command from fetching anything, and the missing
// network keeps anything else from doing so.
package cellbuild
