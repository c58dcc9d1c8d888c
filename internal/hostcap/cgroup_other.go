//go:build !linux

package hostcap

func rootlessLimits(int) (bool, string) {
	return false, "cgroup limits exist on Linux only"
}
