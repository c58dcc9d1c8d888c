// Package capsidprobe is the capsid's proof shared by the host and VM-lab
// integration tests: it asks a control cell (process backend) and sandboxed
// cells to run the testcell's capsid probes
// (test/integration/cells/testcell/capsid.go) and checks that each probe
// succeeds, or reaches the kernel, in the control and is stopped in every
// sandbox.
package capsidprobe
