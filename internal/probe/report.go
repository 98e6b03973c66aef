package probe

import (
	"crypto/x509"
	"time"
)

// SchemaVersion names the JSON layout; it changes when a field changes
// meaning or goes away (adding fields does not change it).
const SchemaVersion = "posthorn-probe/1"

// Report is the whole result of one run, as printed by --json. SCHEMA.md
// describes every field.
type Report struct {
	Schema     string        `json:"schema"`
	Started    time.Time     `json:"started"`
	DurationMS int64         `json:"duration_ms"`
	Hosts      []*HostReport `json:"hosts"`
	Domain     *DomainReport `json:"domain,omitempty"`
	// Findings are all findings of hosts and domain, highest severity first.
	Findings []Finding `json:"findings"`
	// Worst is the highest severity found, or "none".
	Worst string `json:"worst"`
}

// HostReport is what one SMTP server showed.
type HostReport struct {
	Target    string `json:"target"` // "host:port"
	Host      string `json:"host"`
	Port      int    `json:"port"`
	Mode      Mode   `json:"mode"`
	Address   string `json:"address,omitempty"` // the IP connected to
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`

	ConnectMS int64  `json:"connect_ms"`
	BannerMS  int64  `json:"banner_ms"`
	Banner    string `json:"banner"`

	Identification Identification `json:"identification"`

	Greeting   string      `json:"greeting_command,omitempty"` // "EHLO" or "HELO"
	EHLO       []string    `json:"ehlo"`
	Extensions []Extension `json:"extensions"`
	// SizeLimit is SIZE's value: null without SIZE, 0 for SIZE without a
	// limit (RFC 1870).
	SizeLimit  *int64 `json:"size_limit"`
	Pipelining bool   `json:"pipelining"`
	StartTLS   bool   `json:"starttls"`

	AuthBeforeTLS []string `json:"auth_before_tls"`
	AuthAfterTLS  []string `json:"auth_after_tls"`

	TLS   *TLSReport   `json:"tls,omitempty"`
	VRFY  *VRFYReport  `json:"vrfy,omitempty"`
	EXPN  *Exchange    `json:"expn,omitempty"`
	Relay *RelayReport `json:"relay,omitempty"`
	DANE  *DANEReport  `json:"dane,omitempty"`
	PTR   []PTRCheck   `json:"ptr,omitempty"`

	Findings   []Finding `json:"findings"`
	Transcript []string  `json:"transcript"`

	evidence  Evidence
	peerCerts []*x509.Certificate // the chain served, for DANE
}

// Extension is one EHLO keyword and its parameters.
type Extension struct {
	Keyword string `json:"keyword"`
	Params  string `json:"params,omitempty"`
}

// Exchange is one command and the reply to it.
type Exchange struct {
	Command string `json:"command"`
	Code    int    `json:"code"`
	Reply   string `json:"reply"`
}

// TLSReport describes TLS on the port: STARTTLS or implicit.
type TLSReport struct {
	Implicit    bool   `json:"implicit"`
	Handshake   bool   `json:"handshake"`
	Error       string `json:"error,omitempty"`
	Version     string `json:"version,omitempty"`
	Cipher      string `json:"cipher,omitempty"`
	HandshakeMS int64  `json:"handshake_ms"`
	// Versions lists each TLS version tried alone, when --tls-versions.
	Versions []TLSVersion `json:"versions,omitempty"`
	Chain    []CertInfo   `json:"chain"`
	// NameChecked is the name the leaf must be valid for: the MX or target
	// host name; empty when the target was given as an IP.
	NameChecked string `json:"name_checked"`
	NameMatch   bool   `json:"name_match"`
	// Trusted: the chain verifies to a trusted root (name aside).
	Trusted     bool   `json:"trusted"`
	VerifyError string `json:"verify_error,omitempty"`
}

// TLSVersion says whether the server completed a handshake limited to one
// version.
type TLSVersion struct {
	Version  string `json:"version"`
	Accepted bool   `json:"accepted"`
	Cipher   string `json:"cipher,omitempty"`
	Error    string `json:"error,omitempty"`
}

// CertInfo describes one certificate of the served chain.
type CertInfo struct {
	Subject    string    `json:"subject"`
	Issuer     string    `json:"issuer"`
	SANs       []string  `json:"sans"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	DaysLeft   int       `json:"days_left"`
	SelfSigned bool      `json:"self_signed"`
	KeyType    string    `json:"key_type"`
	SHA256     string    `json:"sha256"`
}

// VRFYReport is how VRFY answers a name that exists (postmaster, which
// RFC 5321 4.5.1 requires) and a made-up one.
type VRFYReport struct {
	Known   Exchange `json:"known"`
	Unknown Exchange `json:"unknown"`
	// Enumerates: the two answers differ in kind, so names can be tested.
	Enumerates bool   `json:"enumerates"`
	Verdict    string `json:"verdict"`
}

// DANEReport compares TLSA records with the served certificate.
type DANEReport struct {
	Name      string       `json:"name"` // _25._tcp.<mx>
	Records   []TLSARecord `json:"records"`
	Authentic bool         `json:"authentic"`
	// Usable counts DANE-TA(2) and DANE-EE(3) records (RFC 7672 3.1.3:
	// PKIX usages 0 and 1 are not for SMTP).
	Usable  int    `json:"usable"`
	Match   bool   `json:"match"`
	Verdict string `json:"verdict"`
	Error   string `json:"error,omitempty"`
}

// TLSARecord is one TLSA record and whether it matched.
type TLSARecord struct {
	Usage        uint8  `json:"usage"`
	Selector     uint8  `json:"selector"`
	MatchingType uint8  `json:"matching_type"`
	Data         string `json:"data"`
	Matched      bool   `json:"matched"`
}

// PTRCheck is the reverse DNS of one address.
type PTRCheck struct {
	Address string   `json:"address"`
	Names   []string `json:"names"`
	// FCrDNS: one of the names resolves back to the address.
	FCrDNS    bool   `json:"fcrdns"`
	Authentic bool   `json:"authentic"`
	Error     string `json:"error,omitempty"`
}
