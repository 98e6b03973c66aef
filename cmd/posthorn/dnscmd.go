package main

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/posthorn/posthorn/internal/acme"
	"github.com/posthorn/posthorn/internal/certs"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/dkim"
)

// runDKIM: posthorn dkim keygen DOMAIN [--selector S] [--algo ed25519|rsa2048]
func runDKIM(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "keygen" {
		fmt.Fprintln(stderr, "Usage: posthorn dkim keygen [-c FILE] [--selector S] [--algo ed25519|rsa2048] [--out FILE] DOMAIN")
		return 2
	}
	fl := flag.NewFlagSet("dkim keygen", flag.ContinueOnError)
	fl.SetOutput(stderr)
	file := fl.String("c", "", "configuration `file` (default: the embedded development configuration)")
	selector := fl.String("selector", "", "DKIM `selector` (default: ed1 or rsa1, after the algorithm)")
	algo := fl.String("algo", "ed25519", "key `algorithm`: ed25519 or rsa2048")
	out := fl.String("out", "", "private key `file` (default: DATA_DIR/dkim/DOMAIN.SELECTOR.key)")
	if err := fl.Parse(reorderFlags(args[1:])); err != nil {
		return 2
	}
	if fl.NArg() != 1 {
		fmt.Fprintln(stderr, "posthorn: dkim keygen needs exactly one DOMAIN")
		return 2
	}
	domain := strings.ToLower(strings.TrimSuffix(fl.Arg(0), "."))
	cfg, err := loadConfig(*file)
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	sel := *selector
	if sel == "" {
		sel = map[string]string{"ed25519": "ed1", "rsa2048": "rsa1"}[*algo]
	}
	priv, txt, err := dkim.GenerateKey(*algo)
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 2
	}
	path := *out
	if path == "" {
		path = filepath.Join(cfg.DataDir, "dkim", domain+"."+sel+".key")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	// O_EXCL: never overwrite a key that may already be published.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		fmt.Fprintf(stderr, "posthorn: %s exists; choose another --selector or --out\n", path)
		return 1
	}
	if err == nil {
		_, err = f.Write(priv)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	fmt.Fprintf(stdout, "; private key written to %s (mode 0600)\n", path)
	fmt.Fprintf(stdout, "; publish this record, then add to the [[domain]] of %s:\n;   [[domain.dkim]]\n;   selector = %q\n;   key = %q\n", domain, sel, path)
	fmt.Fprintln(stdout, zoneTXT(sel+"._domainkey."+domain+".", txt))
	return 0
}

// runDNS: posthorn dns records DOMAIN
func runDNS(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "records" {
		fmt.Fprintln(stderr, "Usage: posthorn dns records [-c FILE] DOMAIN")
		return 2
	}
	fs := flag.NewFlagSet("dns records", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "configuration `file` (default: the embedded development configuration)")
	if err := fs.Parse(reorderFlags(args[1:])); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "posthorn: dns records needs exactly one DOMAIN")
		return 2
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	d := cfg.Domain(fs.Arg(0))
	if d == nil {
		fmt.Fprintf(stderr, "posthorn: %s is not a domain of this configuration (add a [[domain]] first)\n", fs.Arg(0))
		return 1
	}
	if err := writeRecords(stdout, cfg, d); err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	return 0
}

// writeRecords prints every record a domain served by this configuration
// needs, in zone-file syntax.
func writeRecords(w io.Writer, cfg *config.Config, d *config.Domain) error {
	dom := d.Name + "."
	mx := cfg.Hostname + "."
	report := "postmaster@" + d.Name
	fmt.Fprintf(w, "; DNS records for %s, as posthorn's configuration needs them.\n", d.Name)
	fmt.Fprintf(w, "; %s must also have A/AAAA records and matching reverse DNS (PTR) for its addresses.\n", cfg.Hostname)
	fmt.Fprintf(w, "%-40s 3600 IN MX    10 %s\n", dom, mx)
	fmt.Fprintln(w, zoneTXT(dom, "v=spf1 mx -all"))
	for _, k := range d.DKIM {
		sk, err := dkim.LoadSigningKey(d.Name, k.Selector, k.Key)
		if err != nil {
			return err
		}
		rec, err := dkim.PublicKeyRecord(sk.Key)
		if err != nil {
			return err
		}
		fmt.Fprintln(w, zoneTXT(k.Selector+"._domainkey."+dom, rec))
	}
	if len(d.DKIM) == 0 {
		fmt.Fprintf(w, "; no DKIM key configured: make one with posthorn dkim keygen %s\n", d.Name)
	}
	fmt.Fprintln(w, zoneTXT("_dmarc."+dom, "v=DMARC1; p=quarantine; rua=mailto:"+report))
	policy := ownMTASTSPolicy(cfg)
	fmt.Fprintln(w, zoneTXT("_mta-sts."+dom, "v=STSv1; id="+policy.ID()))
	fmt.Fprintf(w, "%-40s 3600 IN CNAME %s\n", "mta-sts."+dom, mx)
	fmt.Fprintln(w, zoneTXT("_smtp._tls."+dom, "v=TLSRPTv1; rua=mailto:"+report))
	fmt.Fprintf(w, "; https://mta-sts.%s/.well-known/mta-sts.txt must serve (with a valid certificate for mta-sts.%s):\n", d.Name, d.Name)
	for _, l := range strings.Split(strings.TrimRight(policy.Text(), "\r\n"), "\r\n") {
		fmt.Fprintf(w, ";   %s\n", l)
	}
	if len(cfg.MTASTS.Listen) > 0 {
		fmt.Fprintf(w, "; posthorn serves it on %s ([mta_sts] listen).\n", strings.Join(cfg.MTASTS.Listen, ", "))
	} else {
		fmt.Fprintln(w, "; posthorn serves it itself when [mta_sts] listen is set (port 443).")
	}
	writeTLSA(w, cfg)
	return nil
}

// writeTLSA prints the DANE-EE record (RFC 7672 3.1.1: usage 3, selector
// 1 SPKI, matching 1 SHA-256) for the certificate the SMTP listeners
// serve, or says why it cannot yet.
func writeTLSA(w io.Writer, cfg *config.Config) {
	owner := "_25._tcp." + cfg.Hostname + "."
	fmt.Fprintf(w, "; DANE (RFC 7672): publish this TLSA record in the zone of %s, and only if that zone\n", cfg.Hostname)
	fmt.Fprintln(w, "; is signed with DNSSEC (senders ignore it otherwise). It names the certificate's key: before")
	fmt.Fprintln(w, "; the key changes, publish the new key's record next to this one and wait out the TTL.")
	var (
		hash, from string
		err        error
	)
	if cfg.TLS.ACME != nil {
		from = "the ACME certificate's key, " + filepath.Join(acmeDir(cfg), acme.KeyFile) + ", kept across renewals"
		var key crypto.Signer
		if key, err = acme.LoadKey(acmeDir(cfg)); err == nil {
			hash, err = certs.TLSA311Key(key.Public())
		} else if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintln(w, "; no ACME key yet: start posthorn serve once (it makes the key first), then run this again.")
			return
		}
	} else {
		certFile, _, selfSigned := cfg.TLSFiles()
		from = certFile
		if selfSigned {
			from = "the self-signed certificate " + certFile
		}
		var pemData []byte
		if pemData, err = os.ReadFile(certFile); err == nil {
			hash, err = tlsaOfPEM(pemData)
		} else if selfSigned && errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintln(w, "; no certificate yet: start posthorn serve once (it makes a self-signed one), then run this again.")
			return
		}
	}
	if err != nil {
		fmt.Fprintf(w, "; cannot compute the TLSA record of %s: %v\n", from, err)
		return
	}
	fmt.Fprintf(w, "; from %s\n", from)
	fmt.Fprintf(w, "%-40s 3600 IN TLSA  3 1 1 %s\n", owner, hash)
}

// tlsaOfPEM is the TLSA 3 1 1 data of the first certificate in a PEM file.
func tlsaOfPEM(data []byte) (string, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return "", errors.New("no PEM certificate in the file")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		leaf, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return "", err
		}
		return certs.TLSA311(leaf), nil
	}
}

// zoneTXT formats a TXT record, split into strings of at most 255 octets
// (RFC 1035 3.3.14), as an RSA DKIM key needs.
func zoneTXT(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, value[:255])
		value = value[255:]
	}
	parts = append(parts, value)
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `\"`) + `"`
	}
	txt := strings.Join(parts, " ")
	if len(parts) > 1 {
		txt = "( " + strings.Join(parts, "\n"+strings.Repeat(" ", 55)) + " )"
	}
	return fmt.Sprintf("%-40s 3600 IN TXT   %s", name, txt)
}

// reorderFlags moves flags after positional arguments to the front, so
// that "keygen example.com --algo rsa2048" works as users type it.
func reorderFlags(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}
