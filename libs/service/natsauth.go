package service

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
)

// NATSAuth is how a binary checks the NATS server and proves who it is:
// a CA bundle to verify the server's certificate, a client certificate
// (mutual TLS; the shipped server config maps it to the deployable's
// permissions, docs/architecture.md "Internal identities"), and/or a NATS
// credential (a JWT .creds file or an nkey seed) for servers run with
// nkeys or accounts. All empty: a plain connection, as to the embedded or
// a local development server.
type NATSAuth struct {
	CA    string // PEM CA bundle the server's certificate must chain to
	Cert  string // PEM client certificate; needs Key
	Key   string // PEM private key of Cert
	Creds string // NATS JWT user credentials (.creds)
	Nkey  string // file holding an nkey seed (SU...)
}

// Sentinel errors of the NATS settings.
var (
	// ErrNATSCertKey: -nats-cert and -nats-key come together.
	ErrNATSCertKey = errors.New("-nats-cert and -nats-key must be given together")
	// ErrNATSCredsNkey: a connection authenticates with one NATS user.
	ErrNATSCredsNkey = errors.New("-nats-creds and -nats-nkey are exclusive")
)

// RegisterFlags defines -nats-ca, -nats-cert, -nats-key, -nats-creds and
// -nats-nkey on fs.
func (a *NATSAuth) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.CA, "nats-ca", "", "PEM CA bundle that verifies the NATS server's certificate (turns TLS on)")
	fs.StringVar(&a.Cert, "nats-cert", "", "PEM client certificate for NATS (mutual TLS, with -nats-key); re-read at every reconnect, so a renewed file applies")
	fs.StringVar(&a.Key, "nats-key", "", "PEM private key of -nats-cert")
	fs.StringVar(&a.Creds, "nats-creds", "", "NATS user credentials file (.creds: JWT and nkey seed)")
	fs.StringVar(&a.Nkey, "nats-nkey", "", "file holding a NATS nkey seed (SU...)")
}

// Check validates the settings and reads every file once, so a missing or
// malformed one fails at start with the flag's name rather than as a
// reconnect loop.
func (a NATSAuth) Check() error {
	if (a.Cert == "") != (a.Key == "") {
		return ErrNATSCertKey
	}
	if a.Creds != "" && a.Nkey != "" {
		return ErrNATSCredsNkey
	}
	if a.CA != "" {
		if _, err := loadPool(a.CA); err != nil {
			return err
		}
	}
	if a.Cert != "" {
		if _, err := loadPair(a.Cert, a.Key); err != nil {
			return err
		}
	}
	for _, f := range []struct{ flag, path string }{{"-nats-creds", a.Creds}, {"-nats-nkey", a.Nkey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.flag, err)
		}
	}
	return nil
}

// Options returns the nats.go options for the settings (after Check). The
// CA bundle and the client key pair are read from disk again at every
// connect and reconnect: cert-manager renews them in place.
func (a NATSAuth) Options() ([]nats.Option, error) {
	if err := a.Check(); err != nil {
		return nil, err
	}
	var opts []nats.Option
	var certCB nats.TLSCertHandler
	var caCB nats.RootCAsHandler
	if a.Cert != "" {
		certCB = func() (tls.Certificate, error) { return loadPair(a.Cert, a.Key) }
	}
	if a.CA != "" {
		caCB = func() (*x509.CertPool, error) { return loadPool(a.CA) }
	}
	if certCB != nil || caCB != nil {
		opts = append(opts, nats.ClientTLSConfig(certCB, caCB))
	}
	switch {
	case a.Creds != "":
		opts = append(opts, nats.UserCredentials(a.Creds))
	case a.Nkey != "":
		o, err := nats.NkeyOptionFromSeed(a.Nkey)
		if err != nil {
			return nil, fmt.Errorf("-nats-nkey: %w", err)
		}
		opts = append(opts, o)
	}
	return opts, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-nats-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-nats-ca: no PEM certificate in %s", file)
	}
	return pool, nil
}

func loadPair(cert, key string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("-nats-cert/-nats-key: %w", err)
	}
	return c, nil
}
