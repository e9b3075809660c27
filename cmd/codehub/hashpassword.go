package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/codehub-dev/codehub/internal/password"
	"golang.org/x/term"
)

// runHashPassword prints the argon2id hash of a password read from stdin
// (without echo on a terminal), for hashed-password in a config file.
func runHashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) != 0 {
		return usageError{"usage: codehub hash-password < password-file"}
	}
	var pw string
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return fmt.Errorf("read password: %w", err)
		}
		pw = string(b)
	} else {
		line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("read password: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		return fmt.Errorf("empty password on stdin")
	}
	h, err := password.New(pw, password.DefaultParams)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h.String())
	return nil
}
