//go:build tools

package tools

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/emersion/go-msgauth/dkim"
	_ "github.com/emersion/go-sasl"
	_ "github.com/emersion/go-smtp"
	_ "github.com/miekg/dns"
	_ "golang.org/x/crypto/argon2"
	_ "golang.org/x/net/idna"
)
