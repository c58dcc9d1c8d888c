package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
)

// vandalTarget is what the vandal probe attacks: a directory and a socket in
// it that belongs to someone else.
type vandalTarget struct {
	Dir    string `json:"dir"`
	Victim string `json:"victim"`
}

// vandal tries everything a cell must not be able to do to the session dir
// and the sockets in it, and reports each attempt's result ("ok" or the
// error). With arg "control" it first makes a writable dir of its own in
// /tmp holding a socket it listens on, and attacks that: every attempt must
// then succeed, which shows the probe works where nothing stops it.
func vandal(arg string) ([]byte, error) {
	var t vandalTarget
	if arg == "control" {
		t.Dir = "/tmp/vandal-control"
		if err := os.MkdirAll(t.Dir, 0o700); err != nil {
			return nil, err
		}
		t.Victim = filepath.Join(t.Dir, "victim.sock")
		os.Remove(t.Victim)
		ln, err := net.Listen("unix", t.Victim)
		if err != nil {
			return nil, err
		}
		defer ln.Close()
	} else if err := json.Unmarshal([]byte(arg), &t); err != nil {
		return nil, err
	}
	out := map[string]string{}
	try := func(what string, f func() error) { out[what] = string(result(f())) }

	try("create", func() error { return os.WriteFile(filepath.Join(t.Dir, "vandal-was-here"), nil, 0o600) })
	try("mkdir", func() error { return os.Mkdir(filepath.Join(t.Dir, "vandal-dir"), 0o700) })
	try("fill", func() error {
		f, err := os.Create(filepath.Join(t.Dir, "vandal-fill"))
		if err != nil {
			return err
		}
		defer f.Close()
		chunk := make([]byte, 1<<20)
		for range 8 {
			if _, err := f.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	})
	try("bind", func() error {
		ln, err := net.Listen("unix", filepath.Join(t.Dir, "vandal.sock"))
		if err == nil {
			ln.Close()
		}
		return err
	})
	try("chmod", func() error { return os.Chmod(t.Victim, 0o666) })
	try("rename", func() error { return os.Rename(t.Victim, t.Victim+".moved") })
	// Put it back for the next attempts when the rename worked (the control).
	os.Rename(t.Victim+".moved", t.Victim)
	try("replace", func() error {
		decoy := filepath.Join(t.Dir, "decoy")
		if err := os.WriteFile(decoy, nil, 0o600); err != nil {
			// No file to rename over it: try it through a hard link of an
			// existing one instead.
			if err := os.Link(t.Victim, decoy); err != nil {
				return err
			}
		}
		return os.Rename(decoy, t.Victim)
	})
	try("unlink", func() error { return os.Remove(t.Victim) })
	try("rebind", func() error {
		os.Remove(t.Victim)
		ln, err := net.Listen("unix", t.Victim)
		if err == nil {
			ln.Close()
		}
		return err
	})
	return json.Marshal(out)
}

// EnvBenchListen, when set, makes testcell a bare server for the spawn
// benchmark's baseline: before main runs it binds a Unix socket at that
// path, writes one line to stdout once it listens (connections succeed from
// then on) and accepts until it is killed. It is the same binary the root
// launches, started with no root, to the same point of readiness.
const EnvBenchListen = "TESTCELL_BENCH_LISTEN"

func init() {
	path := os.Getenv(EnvBenchListen)
	if path == "" {
		return
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		os.Stderr.WriteString("testcell: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("listening\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Close()
	}
}
