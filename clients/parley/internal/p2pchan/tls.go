package p2pchan

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/quic-go/quic-go"
)

// TLS parameters of §20.5.
const (
	ALPN       = "parley-p2p/1"
	ServerName = "parley-p2p"
)

// certificate makes the self-signed X.509 certificate of §20.5 for key:
// only its public key matters (subject and validity are ignored by
// peers), so it is made afresh for each channel.
func certificate(key ed25519.PrivateKey) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: ServerName},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(100 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// peerKeyCheck returns the TLS callbacks that accept only want as the
// peer's key. Chains are not verified (there is no CA: the key itself is
// what was pinned, §20.1); the handshake's CertificateVerify proves the peer
// holds the private half. onMismatch hears of a wrong key.
//
// Both callbacks check: VerifyPeerCertificate sees the certificate of a full
// handshake, VerifyConnection also runs on resumed sessions (which never
// happen here: no session cache, tickets disabled; belt and braces).
func peerKeyCheck(want ed25519.PublicKey, onMismatch func(error)) (func([][]byte, [][]*x509.Certificate) error, func(tls.ConnectionState) error) {
	check := func(der []byte) error {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		got, ok := cert.PublicKey.(ed25519.PublicKey)
		if !ok {
			err := fmt.Errorf("%w (not an Ed25519 key)", ErrPeerKey)
			onMismatch(err)
			return err
		}
		if !got.Equal(want) {
			err := fmt.Errorf("%w (got %x)", ErrPeerKey, []byte(got))
			onMismatch(err)
			return err
		}
		return nil
	}
	verifyCert := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) != 1 {
			return fmt.Errorf("peer sent %d certificates, want 1", len(raw))
		}
		return check(raw[0])
	}
	verifyConn := func(cs tls.ConnectionState) error {
		if cs.NegotiatedProtocol != ALPN {
			return fmt.Errorf("ALPN %q, want %q", cs.NegotiatedProtocol, ALPN)
		}
		if len(cs.PeerCertificates) != 1 {
			return errors.New("no peer certificate")
		}
		return check(cs.PeerCertificates[0].Raw)
	}
	return verifyCert, verifyConn
}

func clientTLS(cert tls.Certificate, peer ed25519.PublicKey, onMismatch func(error)) *tls.Config {
	vc, vconn := peerKeyCheck(peer, onMismatch)
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{cert},
		ServerName:            ServerName,
		NextProtos:            []string{ALPN},
		InsecureSkipVerify:    true, // no CA: VerifyPeerCertificate checks the pinned key instead
		VerifyPeerCertificate: vc,
		VerifyConnection:      vconn,
	}
}

func serverTLS(cert tls.Certificate, peer ed25519.PublicKey, onMismatch func(error)) *tls.Config {
	vc, vconn := peerKeyCheck(peer, onMismatch)
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cert},
		NextProtos:             []string{ALPN},
		ClientAuth:             tls.RequireAnyClientCert, // any: VerifyPeerCertificate checks the key
		VerifyPeerCertificate:  vc,
		VerifyConnection:       vconn,
		SessionTicketsDisabled: true,
	}
}

// statelessResetKey derives the QUIC stateless reset key (RFC 9000 §10.3)
// from the device key, so that after a restart this device answers the
// peer's packets for a connection it forgot with a reset the peer
// believes, and the peer reconnects at once instead of after the idle
// timeout.
func statelessResetKey(key ed25519.PrivateKey) *quic.StatelessResetKey {
	h := sha256.New()
	h.Write([]byte("parley-p2p stateless reset key v1"))
	h.Write(key.Seed())
	var k quic.StatelessResetKey
	copy(k[:], h.Sum(nil))
	return &k
}
