package rundir

import (
	"fmt"
	"os"
	"path/filepath"
)

// The environment variables that name the user's config files.
const (
	EnvAllowlist = "CELL_ALLOWLIST"
	EnvTrust     = "CELL_TRUST"
)

// AllowlistPath is the allowlist every command uses: flagValue when set,
// else $CELL_ALLOWLIST, else $XDG_CONFIG_HOME/cell/allowlist.toml
// (~/.config/cell/allowlist.toml).
func AllowlistPath(flagValue string) (string, error) {
	return configPath(flagValue, EnvAllowlist, "allowlist.toml")
}

// TrustPath is trust.toml: $CELL_TRUST, else
// $XDG_CONFIG_HOME/cell/trust.toml.
func TrustPath() (string, error) {
	return configPath("", EnvTrust, "trust.toml")
}

// KeyPath is where cellroot keygen writes the private key called name:
// $XDG_CONFIG_HOME/cell/keys/NAME.key.
func KeyPath(name string) (string, error) {
	return configPath("", "", filepath.Join("keys", name+".key"))
}

func configPath(flagValue, env, name string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if p := os.Getenv(env); env != "" && p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", name, err)
	}
	return filepath.Join(dir, "cell", name), nil
}
