package smtpserver

import (
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/testutil"
)

// TestRequireTLSAdvertisedAfterTLSAndStored: RFC 8689 2 and 3.
func TestRequireTLSAdvertisedAfterTLSAndStored(t *testing.T) {
	h := newHarness(t, nil)
	c := testutil.Dial(t, h.addr[RoleSMTP])
	r := c.ExpectCmd("EHLO client.example.org", 250, "")
	if strings.Contains(r.Text(), "REQUIRETLS") {
		t.Fatalf("REQUIRETLS advertised before TLS: %q", r.Lines)
	}
	c.ExpectCmd("MAIL FROM:<a@client.example.org> REQUIRETLS", 530, "5.7.10")
	c.StartTLS(h.cert.Client)
	r = c.ExpectCmd("EHLO client.example.org", 250, "")
	if !strings.Contains(r.Text(), "REQUIRETLS") {
		t.Fatalf("REQUIRETLS not advertised after TLS: %q", r.Lines)
	}
	c.ExpectCmd("MAIL FROM:<a@client.example.org> REQUIRETLS=yes", 555, "5.5.4")
	c.ExpectCmd("MAIL FROM:<a@client.example.org> REQUIRETLS", 250, "")
	c.ExpectCmd("RCPT TO:<postmaster@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("Subject: hi\r\n\r\nhi\r\n.", 250, "")
	if h.queuedCount() != 1 || !h.queued[0].RequireTLS {
		t.Fatalf("queued %d, RequireTLS not stored", h.queuedCount())
	}
}
