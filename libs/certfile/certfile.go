// Package certfile serves a TLS certificate from a pair of PEM files and
// takes up a new pair when the files change, with no restart: what
// cert-manager's renewals need.
//
// The files are polled (read and hashed) rather than watched: Kubernetes
// updates a Secret volume by writing a new timestamped directory and
// swapping the "..data" symlink to it, which inotify on the files
// themselves never sees, and polling a few kilobytes every few seconds
// costs nothing. Reading through the symlinks (os.ReadFile) sees the swap
// like any other change.
//
// A pair that does not load (a half-written file, a key that does not
// match its certificate, one file replaced before the other) never
// replaces a good one: the old certificate keeps being served, the error
// is logged once per bad content, and the next poll tries again, so the
// pair is taken up once both files are complete.
package certfile

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often Run polls the files when given 0. Kubernetes
// itself takes up to about a minute to update a Secret volume.
const DefaultInterval = 10 * time.Second

// Reloader holds the certificate loaded from CertFile and KeyFile. Its
// GetCertificate serves the latest good pair; Run (or Reload) takes up
// changes. It is safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	cert atomic.Pointer[tls.Certificate] // the pair being served, never nil after New

	mu      sync.Mutex        // guards the fields below (one Reload at a time)
	current [sha256.Size]byte // hash of the files' contents now served
	bad     [sha256.Size]byte // hash of the last contents that failed to load (logged once)
	readErr string            // the last error reading the files (logged once)
}

// ErrLoad wraps a pair of files that does not load as a certificate.
var ErrLoad = errors.New("certfile: cannot load the certificate and key")

// New loads the pair; it fails if it does not load. A nil log discards.
func New(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	sum, cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.current = sum
	r.cert.Store(cert)
	return r, nil
}

// GetCertificate is for tls.Config.GetCertificate: the latest good pair.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Certificate is the pair being served now.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// TLSConfig returns a server configuration serving r's certificate (TLS
// 1.2 and later).
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}
}

// Reload reads the files and serves their pair if they changed and load.
// It reports whether a new pair is served now; a pair that does not load
// is an error wrapping ErrLoad, and the previous pair stays.
func (r *Reloader) Reload() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum, err := r.hash()
	if err != nil {
		if msg := err.Error(); msg != r.readErr {
			r.readErr = msg
			r.log.Error("cannot read the TLS certificate files; still serving the previous certificate", "err", err)
		}
		return false, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	r.readErr = ""
	if sum == r.current {
		return false, nil
	}
	sum, cert, err := r.load()
	if err != nil {
		if sum != r.bad {
			r.bad = sum
			r.log.Error("new TLS certificate does not load; still serving the previous one", "cert", r.certFile, "key", r.keyFile, "err", err)
		}
		return false, err
	}
	r.current = sum
	r.cert.Store(cert)
	r.log.Info("TLS certificate reloaded", "cert", r.certFile, "subject", cert.Leaf.Subject.String(),
		"serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
	return true, nil
}

// Run polls the files every interval (0: DefaultInterval) until ctx ends.
func (r *Reloader) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = r.Reload() // errors are logged by Reload
		}
	}
}

// hash is the SHA-256 of both files' contents.
func (r *Reloader) hash() ([sha256.Size]byte, error) {
	certPEM, keyPEM, err := r.read()
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sum(certPEM, keyPEM), nil
}

func (r *Reloader) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(r.certFile); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = os.ReadFile(r.keyFile); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func sum(certPEM, keyPEM []byte) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", len(certPEM))
	h.Write(certPEM)
	h.Write(keyPEM)
	var s [sha256.Size]byte
	h.Sum(s[:0])
	return s
}

// load reads and parses the pair, returning the hash of what it read.
func (r *Reloader) load() ([sha256.Size]byte, *tls.Certificate, error) {
	certPEM, keyPEM, err := r.read()
	if err != nil {
		return [sha256.Size]byte{}, nil, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	s := sum(certPEM, keyPEM)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return s, nil, fmt.Errorf("%w: %s, %s: %w", ErrLoad, r.certFile, r.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return s, nil, fmt.Errorf("%w: %s: %w", ErrLoad, r.certFile, err)
		}
	}
	return s, &cert, nil
}
