package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// MinSecretLen is the shortest workspace secret the agent accepts.
const MinSecretLen = 32

// SecretEnv is the environment variable that may carry the workspace
// secret instead of a file.
const SecretEnv = "CODEHUB_AGENT_SECRET"

// ErrNoSecret is returned by LoadSecret when neither a file nor the
// environment gives a secret.
var ErrNoSecret = errors.New("no workspace secret: give --secret-file or set " + SecretEnv)

// LoadSecret reads the workspace secret from file when it is set, else from
// the environment variable SecretEnv. A trailing line break is not part of
// the secret. It refuses a file that group or others may access (the secret
// is the only thing between the network and the user's shell) and a secret
// shorter than MinSecretLen bytes. The file is left in place.
func LoadSecret(file string, getenv func(string) string) ([]byte, error) {
	var secret []byte
	switch {
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("secret file: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("secret file: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("secret file %s: not a regular file", file)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("secret file %s: mode %04o lets group or others access it; chmod 600 it", file, perm)
		}
		data, err := io.ReadAll(io.LimitReader(f, 4096))
		if err != nil {
			return nil, fmt.Errorf("secret file %s: %w", file, err)
		}
		secret = bytes.TrimRight(data, "\r\n")
		if len(secret) == 0 {
			return nil, fmt.Errorf("secret file %s is empty", file)
		}
	case getenv(SecretEnv) != "":
		secret = []byte(getenv(SecretEnv))
	default:
		return nil, ErrNoSecret
	}
	if err := checkSecret(secret); err != nil {
		return nil, err
	}
	return secret, nil
}

func checkSecret(secret []byte) error {
	if len(secret) == 0 {
		return ErrNoSecret
	}
	if len(secret) < MinSecretLen {
		return fmt.Errorf("workspace secret too short: %d bytes, need at least %d", len(secret), MinSecretLen)
	}
	return nil
}
