package server_test

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// TestTLSCertificateReload: parleyd's client listeners take up a renewed
// certificate (a Secret volume's symlink swap) without a restart, as the
// gateway's do.
func TestTLSCertificateReload(t *testing.T) {
	ca := testenv.NewCA(t)
	c1, k1 := ca.ServerPEM(t, 11)
	vol := testenv.NewSecretVolume(t, c1, k1)
	cfg := testConfig(t)
	cfg.Gateway.TLSCert, cfg.Gateway.TLSKey = vol.CertFile(), vol.KeyFile()
	cfg.Gateway.TLSReload = 10 * time.Millisecond
	srv := run(t, cfg)
	serial := func() int64 {
		t.Helper()
		c, err := tls.Dial("tcp", srv.TCPAddr().String(), &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if n := serial(); n != 11 {
		t.Fatalf("serial %d, want 11", n)
	}
	c2, k2 := ca.ServerPEM(t, 12)
	vol.Update(t, c2, k2)
	testenv.Eventually(t, 10*time.Second, "renewed certificate served", func() bool { return serial() == 12 })
}

// TestStartsWithMinIODown: parleyd given a MinIO that is not running
// starts, is ready and serves chat; a file offer is refused UNAVAILABLE
// with a retry hint until MinIO runs, then accepted.
func TestStartsWithMinIODown(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.Stop()
	cfg := testConfig(t)
	cfg.Storage.MinIO.Endpoint, cfg.Storage.MinIO.AccessKey, cfg.Storage.MinIO.SecretKey = m.Endpoint, m.AccessKey, m.SecretKey
	srv := run(t, cfg)
	var c *wireConn
	for _, name := range []string{"bob", "ada"} {
		c = dialWire(t, srv.TCPAddr().String())
		if r := c.request(t, &parleyv1.Frame{Body: &parleyv1.Frame_Register{Register: &parleyv1.RegisterRequest{
			Username: name, Password: name + "'s password", Options: &parleyv1.ClientOptions{SkipPresenceFeed: true}}}}); r.GetSession() == nil {
			t.Fatalf("register %s with MinIO down: %v", name, r)
		}
	}
	if r := c.request(t, &parleyv1.Frame{Body: &parleyv1.Frame_Send{Send: &parleyv1.SendRequest{
		Conversation: "room.public", Text: "no storage needed", ClientKey: "k1"}}}); r.GetSendReply() == nil {
		t.Fatalf("send with MinIO down: %v", r)
	}
	offer := func() *parleyv1.Frame {
		return c.request(t, &parleyv1.Frame{Body: &parleyv1.Frame_OfferFile{OfferFile: &parleyv1.OfferFileRequest{
			ToUsername: "bob", Name: "a.txt", Size: 5,
			Sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}}})
	}
	if e := offer().GetError(); e.GetCode() != parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE || e.GetRetryAfterMs() == 0 {
		t.Fatalf("file offer with MinIO down: %v, want UNAVAILABLE with a retry hint", e)
	}
	m.Start(t)
	testenv.Eventually(t, 20*time.Second, "file offer accepted once MinIO runs", func() bool {
		return offer().GetFileOffer() != nil
	})
}
