package trust

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
)

// Kind says what a signature signs.
type Kind string

const (
	// KindSource signs a cell's source tree hash (build.Source.Hash).
	KindSource Kind = "source"
	// KindBinary signs a binary's sha256.
	KindBinary Kind = "binary"
)

// privateHeader starts a private key file.
const privateHeader = "cell ed25519 private key v1"

// GenerateKey makes a key pair: the private key file's contents and the
// public key in text form.
func GenerateKey() (private []byte, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("trust: generate key: %w", err)
	}
	return []byte(privateHeader + "\n" + base64.StdEncoding.EncodeToString(priv.Seed()) + "\n"), FormatPublicKey(pub), nil
}

// LoadPrivateKey reads a private key file, which must be readable by its
// owner only.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := readSafe(path, 0o077)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) != 2 || lines[0] != privateHeader {
		return nil, &Error{File: path, Msg: "not a cell private key file (cellroot keygen makes them)", Err: ErrInvalid}
	}
	seed, err := base64.StdEncoding.DecodeString(lines[1])
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, &Error{File: path, Line: 2, Msg: "the key is not a base64 ed25519 seed", Err: ErrInvalid}
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// message is what is signed: a fixed prefix, so that a signature made for
// one purpose cannot be replayed as another, then the kind and the digest.
func message(kind Kind, digest string) []byte {
	return []byte(fmt.Sprintf("cell signature v1\nkind %s\nsha256 %s\n", kind, digest))
}

// Sign returns a signature file's contents signing digest as kind.
func Sign(priv ed25519.PrivateKey, kind Kind, digest string) []byte {
	sig := ed25519.Sign(priv, message(kind, digest))
	pub := priv.Public().(ed25519.PublicKey)
	return []byte(fmt.Sprintf("# Made by cellroot sign; see docs/trust.md.\nversion = %d\nkind = %q\nsha256 = %q\nkey = %q\nsignature = %q\n",
		Version, kind, digest, FormatPublicKey(pub), base64.StdEncoding.EncodeToString(sig)))
}

// Signature is a parsed signature file.
type Signature struct {
	Kind   Kind
	SHA256 string
	Key    ed25519.PublicKey
	Sig    []byte
}

// ParseSignature parses a signature file strictly.
func ParseSignature(path string, data []byte) (*Signature, error) {
	known := []string{"version", "kind", "sha256", "key", "signature"}
	doc, err := decode(path, data, func(k toml.Key) bool {
		for _, n := range known {
			if len(k) == 1 && k[0] == n {
				return true
			}
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	if err := doc.version(); err != nil {
		return nil, err
	}
	str := func(k string) (string, error) {
		s, ok := doc.raw[k].(string)
		if !ok {
			return "", doc.fail([]string{k}, "missing or not a string")
		}
		return s, nil
	}
	var s Signature
	kind, err := str("kind")
	if err != nil {
		return nil, err
	}
	if s.Kind = Kind(kind); s.Kind != KindSource && s.Kind != KindBinary {
		return nil, doc.fail([]string{"kind"}, "%q: want %q or %q", kind, KindSource, KindBinary)
	}
	if s.SHA256, err = str("sha256"); err != nil {
		return nil, err
	}
	key, err := str("key")
	if err != nil {
		return nil, err
	}
	if s.Key, err = ParsePublicKey(key); err != nil {
		return nil, doc.fail([]string{"key"}, "%v", err)
	}
	sig, err := str("signature")
	if err != nil {
		return nil, err
	}
	if s.Sig, err = base64.StdEncoding.DecodeString(sig); err != nil || len(s.Sig) != ed25519.SignatureSize {
		return nil, doc.fail([]string{"signature"}, "not a %d-byte signature in base64", ed25519.SignatureSize)
	}
	return &s, nil
}

// VerifyFile checks that the signature file at path signs digest as kind
// with a key trusted trusts; it returns that key's name.
func VerifyFile(path string, kind Kind, digest string, trusted *File) (string, error) {
	data, err := readSafe(path, 0o022)
	if err != nil {
		return "", err
	}
	sig, err := ParseSignature(path, data)
	if err != nil {
		return "", err
	}
	return Verify(sig, kind, digest, trusted)
}

// Verify checks a parsed signature; see VerifyFile.
func Verify(sig *Signature, kind Kind, digest string, trusted *File) (string, error) {
	name, ok := trusted.Name(sig.Key)
	if !ok {
		where := "no trust.toml is loaded"
		if trusted != nil {
			where = "it is not in " + trusted.Path
		}
		return "", fmt.Errorf("%w: key %s (%s)", ErrUntrusted, FormatPublicKey(sig.Key), where)
	}
	if !ed25519.Verify(sig.Key, message(sig.Kind, sig.SHA256), sig.Sig) {
		return "", fmt.Errorf("%w: key %q", ErrBadSignature, name)
	}
	if sig.Kind != kind || sig.SHA256 != digest {
		return "", fmt.Errorf("%w: key %q signed %s %s, but the %s is %s", ErrMismatch, name, sig.Kind, sig.SHA256, kind, digest)
	}
	return name, nil
}

// WritePrivateKey writes a new private key file, refusing to overwrite one.
func WritePrivateKey(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("trust: write %s: %w", path, err)
	}
	return f.Close()
}
