package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/cellbuild"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/internal/trust"
)

// ErrRefused is wrapped by every vetting failure.
var ErrRefused = errors.New("refused")

// NewVet returns the session root's vetting hook (supervisor.Config.Vet)
// for al. Before each launch of a cell whose entry has a source, pins or a
// signature requirement it checks, and refuses with the reason otherwise:
//
//   - source: exec resolves to a build, recorded in its build.json, of the
//     source tree now in the dir; the binary is unchanged since that build;
//     the dir's Cell.toml names the cell and asks for no more than the entry
//     grants (network, spawn edges, limits, instances);
//   - source_sha256 / sha256: the source tree's / the binary's hash is the
//     pinned one;
//   - require_signature: Cell.sig (source) or EXEC.sig (binary) verifies
//     against a key of trust.toml, read at each launch (trustPath "" means
//     rundir.TrustPath()), so a key removed from it stops counting at once.
//
// Entries with none of these are left to policy alone. The hook holds no
// state and is safe for concurrent use.
func NewVet(al *allowlist.File, trustPath string) func(ctx context.Context, spec cellspec.Spec) error {
	return func(ctx context.Context, spec cellspec.Spec) error {
		if al == nil {
			return nil
		}
		e, ok := al.Cells[spec.Name]
		if !ok || (e.Source == "" && e.SHA256 == "" && !e.RequireSignature) {
			return nil
		}
		if err := vet(e, spec.Exec, trustPath); err != nil {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return nil
	}
}

func vet(e allowlist.Cell, exec, trustPath string) error {
	binary := exec
	var srcSum string
	if e.Source != "" {
		resolved, rec, err := cellbuild.Resolve(exec)
		if err != nil {
			return err
		}
		binary = resolved
		if rec.SourceDir != e.Source || rec.Name != e.Name {
			return fmt.Errorf("exec %s is a build of cell %q from %s, not of %s", exec, rec.Name, rec.SourceDir, e.Source)
		}
		src, err := cellbuild.SourceOf(e.Name, e.Source)
		if err != nil {
			return err
		}
		if srcSum, err = src.Hash(); err != nil {
			return err
		}
		if srcSum != rec.SourceSHA256 {
			return fmt.Errorf("the source in %s changed since its build (built from source %s, now %s): build it again (cellroot run or cellroot build)",
				e.Source, rec.SourceSHA256[:12], srcSum[:12])
		}
		if sum, err := cellbuild.FileSHA256(binary); err != nil {
			return fmt.Errorf("hash binary: %w", err)
		} else if sum != rec.BinarySHA256 {
			return fmt.Errorf("the binary %s was modified after its build (sha256 %s, built %s)", binary, sum, rec.BinarySHA256)
		}
		if e.SourceSHA256 != "" && srcSum != e.SourceSHA256 {
			return fmt.Errorf("the source tree in %s has sha256 %s, but the allowlist pins %s", e.Source, srcSum, e.SourceSHA256)
		}
		if err := withinGrant(e); err != nil {
			return err
		}
	}
	var binSum string
	if e.SHA256 != "" || (e.RequireSignature && e.Source == "") {
		var err error
		if binSum, err = cellbuild.FileSHA256(binary); err != nil {
			return fmt.Errorf("hash binary: %w", err)
		}
		if e.SHA256 != "" && binSum != e.SHA256 {
			return fmt.Errorf("the binary %s has sha256 %s, but the allowlist pins %s", binary, binSum, e.SHA256)
		}
	}
	if !e.RequireSignature {
		return nil
	}
	if trustPath == "" {
		var err error
		if trustPath, err = rundir.TrustPath(); err != nil {
			return err
		}
	}
	trusted, err := trust.Load(trustPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the allowlist requires a signature, and there is no %s naming trusted keys", trustPath)
	} else if err != nil {
		return err
	}
	sigFile, kind, digest := exec+".sig", trust.KindBinary, binSum
	if e.Source != "" {
		sigFile, kind, digest = filepath.Join(e.Source, cellbuild.SignatureName), trust.KindSource, srcSum
	}
	if _, err := trust.VerifyFile(sigFile, kind, digest, trusted); err != nil {
		return fmt.Errorf("signature required: %w", err)
	}
	return nil
}

// withinGrant checks that the Cell.toml in the entry's source asks for no
// more than the entry grants.
func withinGrant(e allowlist.Cell) error {
	file := filepath.Join(e.Source, ManifestName)
	m, _, err := LoadManifest(file)
	if err != nil {
		return err
	}
	if m.Name != e.Name {
		return fmt.Errorf("%s names cell %q, but the allowlist entry is [cell.%s]", file, m.Name, e.Name)
	}
	if why := Exceeds(m, e); why != "" {
		return fmt.Errorf("%s asks for more than the allowlist grants: %s", file, why)
	}
	return nil
}

// Exceeds says how a Cell.toml's request goes beyond an allowlist grant,
// or "" when it does not. A limit the grant sets is exceeded by a request
// that asks for more or for none (unlimited).
func Exceeds(m *Manifest, g allowlist.Cell) string {
	switch {
	case m.Network && !g.Network:
		return "network (granted: none)"
	case m.MaxInstances > g.MaxInstances:
		return fmt.Sprintf("max_instances %d (granted: %d)", m.MaxInstances, g.MaxInstances)
	case restartExceeds(m.Restart, g.Restart) != "":
		return restartExceeds(m.Restart, g.Restart)
	case g.Limits.MemoryBytes != 0 && (m.Limits.MemoryBytes == 0 || m.Limits.MemoryBytes > g.Limits.MemoryBytes):
		return fmt.Sprintf("memory %s (granted: %d bytes)", orNone(m.Limits.MemoryBytes), g.Limits.MemoryBytes)
	case g.Limits.CPU != 0 && (m.Limits.CPU == 0 || m.Limits.CPU > g.Limits.CPU):
		return fmt.Sprintf("cpu %v (granted: %v)", m.Limits.CPU, g.Limits.CPU)
	case g.Limits.Pids != 0 && (m.Limits.Pids == 0 || m.Limits.Pids > g.Limits.Pids):
		return fmt.Sprintf("pids %d (granted: %d)", m.Limits.Pids, g.Limits.Pids)
	}
	for _, s := range m.Spawn {
		if !slices.Contains(g.Spawn, s) {
			return fmt.Sprintf("spawning %q (granted: %v)", s, g.Spawn)
		}
	}
	return ""
}

func orNone(n uint64) string {
	if n == 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%d bytes", n)
}
