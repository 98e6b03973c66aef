// Package arc verifies and extends Authenticated Received Chains (RFC 8617).
//
// An ARC set is three header fields with one instance number i=:
// ARC-Authentication-Results (what a hop concluded), ARC-Message-Signature
// (a DKIM-like signature over the message as the hop sent it) and ARC-Seal
// (a signature over all ARC sets so far). Verify evaluates the chain of a
// received message; Sign makes the set a forwarding hop adds.
//
// The DKIM machinery (tag lists, canonicalization, key records) is
// internal/dkim's; this package adds what differs for ARC.
package arc

import (
	"errors"
	"strconv"

	"github.com/posthorn/posthorn/internal/authres"
)

// Status is a chain validation status (RFC 8617 4.4), as written in cv= and
// in the arc= result of Authentication-Results.
type Status string

// The chain validation statuses.
const (
	// StatusNone: the message carried no ARC set.
	StatusNone Status = "none"
	// StatusPass: every structural rule held, the most recent
	// ARC-Message-Signature and every ARC-Seal verified.
	StatusPass Status = "pass"
	// StatusFail: anything else. RFC 8617 5.2.1: every error, DNS failures
	// included, is permanent.
	StatusFail Status = "fail"
)

// MaxInstances is the largest instance number (and number of sets) a chain
// may have (RFC 8617 4.2.1).
const MaxInstances = 50

// Result is the outcome of Verify.
type Result struct {
	Status Status
	// Reason says why the status is fail; empty otherwise.
	Reason string
	// Instances is N, the highest instance number found (0 for none).
	Instances int
	// OldestPass is the oldest-pass value of RFC 8617 5.2 step 5: 0 when
	// every ARC-Message-Signature verifies, else the lowest instance M+1
	// above the newest one (M) that does not. Only meaningful on pass.
	OldestPass int
	// Terminated is true when a sealer has already marked the chain as
	// failed (an ARC-Seal with cv=fail). The status is then fail (RFC 8617
	// 5.2 step 2 and 3), and no hop may extend the chain (5.1 step 2).
	// The ValiMail suite and dkimpy report this case as "" (dkimpy: None,
	// "the chain is terminated") rather than fail.
	Terminated bool
	// Sets describes each ARC set, oldest (i=1) first, when the chain's
	// structure was valid; nil otherwise.
	Sets []SetInfo
}

// SetInfo describes one ARC set of a structurally valid chain, for local
// policy (which sealers to trust) and for logging.
type SetInfo struct {
	Instance int
	// ChainValidation is the cv= of the set's ARC-Seal.
	ChainValidation Status
	// SealDomain and SealSelector are d= and s= of the ARC-Seal.
	SealDomain, SealSelector string
	// SignatureDomain and SignatureSelector are d= and s= of the
	// ARC-Message-Signature.
	SignatureDomain, SignatureSelector string
	// AuthServID is the authserv-id of the ARC-Authentication-Results.
	AuthServID string
	// AuthResults is the authres-payload after the instance tag, unfolded.
	AuthResults string
}

// AuthResult returns the arc= result for an Authentication-Results field
// (RFC 8617 6 and 10.2): smtp.remote-ip when remoteIP is not empty, and
// header.oldest-pass on a pass.
func (r *Result) AuthResult(remoteIP string) authres.Result {
	a := authres.Result{Method: "arc", Value: string(r.Status)}
	if a.Value == "" {
		a.Value = string(StatusNone)
	}
	if r.Status == StatusFail {
		a.Reason = r.Reason
	}
	if remoteIP != "" {
		a.Props = append(a.Props, authres.Prop{Type: "smtp", Name: "remote-ip", Value: remoteIP})
	}
	if r.Status == StatusPass {
		a.Props = append(a.Props, authres.Prop{Type: "header", Name: "oldest-pass", Value: strconv.Itoa(r.OldestPass)})
	}
	return a
}

// ErrChainFailed is returned by Sign when the most recent ARC-Seal already
// says cv=fail: the chain has ended and no set may be added (RFC 8617 5.1
// step 2).
var ErrChainFailed = errors.New("arc: the chain is marked failed (cv=fail); no set may be added")

// The three ARC header field names (RFC 8617 4.1).
const (
	fieldAAR  = "ARC-Authentication-Results"
	fieldAMS  = "ARC-Message-Signature"
	fieldSeal = "ARC-Seal"
)
