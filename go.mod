module github.com/cellproject/cell

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0 // indirect
	github.com/containers/podman/v5 v5.6.2 // indirect
	github.com/coreos/go-systemd/v22 v22.6.0 // indirect
	github.com/godbus/dbus/v5 v5.1.1-0.20241109141217-c266b19b28e9 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
