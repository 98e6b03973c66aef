package probe

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Evidence is what a server said, collected for identification.
type Evidence struct {
	Banner string   // the 220 greeting, lines joined with "\n"
	EHLO   []string // the EHLO (or HELO) reply lines, without codes
	// Replies maps a step to its reply in wire form ("502 5.5.2 Error: ...",
	// lines joined with "\n"). Steps: "unknown" (an unrecognised
	// command), "help", "vrfy", "vrfy-unknown", "expn", "mail", "rcpt"
	// (the relay refusal or acceptance), "rset", "quit", "auth".
	Replies map[string]string
}

// Identification is the best guess at the server software.
type Identification struct {
	// Software is one of the names in Signatures, or "" when nothing matched.
	Software string `json:"software"`
	Version  string `json:"version,omitempty"`
	// Score is 0..1: the sum of the weights of the matching clues, capped.
	Score float64 `json:"score"`
	// Confidence is "high" (score >= 0.8), "medium" (>= 0.45), "low" or
	// "none"; lowered one step when another product scores nearly as well.
	Confidence string `json:"confidence"`
	// Clues say which replies matched, for the analyst to judge.
	Clues []string `json:"clues"`
	// Runner-up names the next best candidate when it scored.
	RunnerUp string `json:"runner_up,omitempty"`
}

// clue is one thing a product is known to say.
type clue struct {
	software string
	where    string // "banner", "ehlo", or a key of Evidence.Replies
	re       *regexp.Regexp
	weight   float64
	// version, when > 0, is the submatch of re holding the version.
	version int
	why     string
}

func c(software, where, re string, weight float64, version int, why string) clue {
	return clue{software, where, regexp.MustCompile(re), weight, version, why}
}

// Software names that Identify may return.
const (
	Postfix    = "Postfix"
	Exim       = "Exim"
	Sendmail   = "Sendmail"
	MSExchange = "Microsoft Exchange"
	OpenSMTPD  = "OpenSMTPD"
	Qmail      = "qmail"
	Zimbra     = "Zimbra"
	Haraka     = "Haraka"
	Chasquid   = "chasquid"
	Maddy      = "maddy"
	Mox        = "mox"
	Posthorn   = "posthorn"
)

// clues are written from the wording of each product's replies (recorded
// transcripts of Postfix, Exim, OpenSMTPD and Sendmail are under
// testdata/transcripts; the others from their documented default texts).
// A banner naming the product is strong but can be set to anything by the
// administrator, so the wording of EHLO and error replies, which few
// change, weighs in too.
var clues = []clue{
	// Postfix: smtpd_banner default "$myhostname ESMTP $mail_name".
	c(Postfix, "banner", `(?i)\bESMTP Postfix\b(?: \(([^)]*)\))?`, 0.9, 0, "banner names Postfix"),
	c(Postfix, "unknown", `^50[02] 5\.5\.2 Error: command not recognized`, 0.45, 0, "unknown command: \"Error: command not recognized\""),
	c(Postfix, "rcpt", `Relay access denied`, 0.35, 0, "relay refusal: \"Relay access denied\""),
	c(Postfix, "rcpt", `Recipient address rejected`, 0.25, 0, "RCPT refusal: \"Recipient address rejected\""),
	c(Postfix, "vrfy", `^502 5\.5\.1 VRFY command is disabled`, 0.45, 0, "VRFY: \"VRFY command is disabled\""),
	c(Postfix, "vrfy-unknown", `User unknown in (local|virtual) (recipient|mailbox|alias) table`, 0.45, 0, "VRFY: \"User unknown in ... table\""),
	c(Postfix, "expn", `^50[02] 5\.5\.2 Error: command not recognized`, 0.2, 0, "EXPN not recognised, in Postfix words"),
	c(Postfix, "mail", `^250 2\.1\.0 Ok$`, 0.15, 0, "MAIL: \"250 2.1.0 Ok\""),
	c(Postfix, "rset", `^250 2\.0\.0 Ok$`, 0.15, 0, "RSET: \"250 2.0.0 Ok\""),
	c(Postfix, "ehlo", `(?m)^ETRN$`, 0.1, 0, "EHLO lists ETRN"),
	c(Postfix, "ehlo", `(?m)^VRFY$`, 0.15, 0, "EHLO lists VRFY (few servers but Postfix do)"),

	// Exim: "ESMTP Exim 4.96 <date>".
	c(Exim, "banner", `(?i)\bESMTP Exim (\d+\.\d+(?:\.\d+)?)`, 0.9, 1, "banner names Exim"),
	c(Exim, "banner", `(?i)\bExim\b`, 0.5, 0, "banner mentions Exim"),
	c(Exim, "ehlo", `^\S+ Hello \S+ \[[0-9a-fA-F.:]+\]$`, 0.3, 0, "EHLO greeting \"Hello name [ip]\""),
	c(Exim, "ehlo", `(?m)^PIPECONNECT$`, 0.4, 0, "EHLO lists PIPECONNECT (Exim's own extension)"),
	c(Exim, "ehlo", `(?m)^PRDR$`, 0.15, 0, "EHLO lists PRDR"),
	c(Exim, "unknown", `^500 unrecognized command`, 0.45, 0, "unknown command: \"500 unrecognized command\""),
	c(Exim, "rcpt", `relay not permitted`, 0.4, 0, "relay refusal: \"relay not permitted\""),
	c(Exim, "expn", `Administrative prohibition`, 0.3, 0, "\"Administrative prohibition\""),
	c(Exim, "vrfy", `Administrative prohibition|recipient address must contain a domain`, 0.3, 0, "VRFY refusal in Exim words"),
	c(Exim, "rset", `^250 Reset OK`, 0.3, 0, "RSET: \"250 Reset OK\""),
	c(Exim, "quit", `^221 \S+ closing connection`, 0.1, 0, "QUIT: \"closing connection\""),

	// Sendmail: "ESMTP Sendmail 8.17.1.9/8.17.1.9/Debian-2; date".
	c(Sendmail, "banner", `(?i)\bSendmail (\d+\.\d+[.\d]*)`, 0.9, 1, "banner names Sendmail"),
	c(Sendmail, "ehlo", `Hello .*, pleased to meet you$`, 0.25, 0, "EHLO greeting \"pleased to meet you\""),
	c(Sendmail, "ehlo", `(?m)^(VERB|DELIVERBY)$`, 0.35, 0, "EHLO lists VERB or DELIVERBY"),
	c(Sendmail, "unknown", `^500 5\.5\.1 Command unrecognized: "`, 0.5, 0, "unknown command: \"Command unrecognized: ...\""),
	c(Sendmail, "rcpt", `\.\.\. Relaying denied`, 0.45, 0, "relay refusal: \"... Relaying denied\""),
	c(Sendmail, "mail", `\.\.\. Sender ok$`, 0.35, 0, "MAIL: \"... Sender ok\""),
	c(Sendmail, "vrfy-unknown", `\.\.\. User unknown$`, 0.35, 0, "VRFY: \"... User unknown\""),
	c(Sendmail, "help", `This is sendmail version (\S+)`, 0.6, 1, "HELP names sendmail"),

	// Microsoft Exchange.
	c(MSExchange, "banner", `Microsoft ESMTP MAIL Service(?:, Version: (\S+))?`, 0.9, 1, "banner is Exchange's"),
	c(MSExchange, "ehlo", `(?m)^(X-ANONYMOUSTLS|XEXCH50|X-EXPS|XRDST|XSHADOW|X-LINK2STATE)\b`, 0.6, 0, "EHLO lists Exchange's X- extensions"),
	c(MSExchange, "unknown", `^500 5\.3\.3 Unrecognized command`, 0.5, 0, "unknown command: \"5.3.3 Unrecognized command\""),
	c(MSExchange, "rcpt", `5\.7\.54 SMTP; Unable to relay|Unable to relay recipient`, 0.5, 0, "relay refusal in Exchange words"),
	c(MSExchange, "rset", `^250 2\.0\.0 Resetting`, 0.3, 0, "RSET: \"Resetting\""),

	// OpenSMTPD.
	c(OpenSMTPD, "banner", `(?i)\bESMTP OpenSMTPD\b`, 0.9, 0, "banner names OpenSMTPD"),
	c(OpenSMTPD, "ehlo", `Hello .*, pleased to meet you$`, 0.2, 0, "EHLO greeting \"pleased to meet you\""),
	c(OpenSMTPD, "unknown", `^500 5\.5\.1 Invalid command: Command unrecognized`, 0.5, 0, "unknown command: \"Invalid command: Command unrecognized\""),
	c(OpenSMTPD, "vrfy", `^500 5\.5\.1 Invalid command`, 0.2, 0, "VRFY not implemented, in OpenSMTPD words"),
	c(OpenSMTPD, "rcpt", `^550 Invalid recipient`, 0.4, 0, "RCPT refusal: \"550 Invalid recipient\""),
	c(OpenSMTPD, "help", `This is OpenSMTPD`, 0.6, 0, "HELP names OpenSMTPD"),
	c(OpenSMTPD, "quit", `^221 2\.0\.0 Bye$`, 0.1, 0, "QUIT: \"221 2.0.0 Bye\""),

	// qmail: bare "ESMTP" banner, "(#5.5.1)" style codes.
	c(Qmail, "banner", `^220 \S+ ESMTP$`, 0.3, 0, "banner is a bare \"host ESMTP\", as qmail's"),
	c(Qmail, "unknown", `^502 unimplemented \(#5\.5\.1\)`, 0.6, 0, "unknown command: \"unimplemented (#5.5.1)\""),
	c(Qmail, "rcpt", `allowed rcpthosts`, 0.6, 0, "relay refusal: \"not in my list of allowed rcpthosts\""),
	c(Qmail, "vrfy", `send some mail, i'll try my best`, 0.6, 0, "VRFY: \"send some mail, i'll try my best\""),
	c(Qmail, "rset", `^250 flushed`, 0.4, 0, "RSET: \"250 flushed\""),
	c(Qmail, "help", `qmail home page`, 0.6, 0, "HELP names qmail"),

	// Zimbra runs Postfix; only its own banner tells it apart.
	c(Zimbra, "banner", `(?i)\bZimbra\b`, 0.8, 0, "banner names Zimbra"),

	// Haraka.
	c(Haraka, "banner", `(?i)\bESMTP Haraka[ /]?(\d+\.\d+(?:\.\d+)?)?`, 0.9, 1, "banner names Haraka"),
	c(Haraka, "ehlo", `Haraka is at your service`, 0.7, 0, "EHLO: \"Haraka is at your service\""),
	c(Haraka, "quit", `Have a jolly good day`, 0.5, 0, "QUIT: \"Have a jolly good day\""),

	// chasquid.
	c(Chasquid, "banner", `(?i)\bESMTP chasquid\b`, 0.9, 0, "banner names chasquid"),
	c(Chasquid, "ehlo", `- Your hour of destiny has come\.`, 0.8, 0, "EHLO: \"Your hour of destiny has come.\""),

	// maddy is built on go-smtp, whose default greeting it keeps.
	c(Maddy, "banner", `(?i)\bmaddy\b`, 0.9, 0, "banner names maddy"),
	c(Maddy, "banner", `^220 \S+ ESMTP Service Ready$`, 0.35, 0, "go-smtp's greeting \"ESMTP Service Ready\" (maddy keeps it; other go-smtp servers too)"),

	// mox: "ESMTP mox <version>".
	c(Mox, "banner", `(?i)\bESMTP mox(?: (v?[0-9][\w.+-]*))?`, 0.9, 1, "banner names mox"),

	// posthorn: "ESMTP posthorn".
	c(Posthorn, "banner", `(?i)\bESMTP posthorn\b`, 0.9, 0, "banner names posthorn"),
}

// Signatures lists the software Identify knows.
func Signatures() []string {
	seen := map[string]bool{}
	var out []string
	for _, cl := range clues {
		if !seen[cl.software] {
			seen[cl.software] = true
			out = append(out, cl.software)
		}
	}
	return out
}

// Identify guesses the server software from what it said.
func Identify(ev Evidence) Identification {
	type cand struct {
		score   float64
		version string
		clues   []string
		seen    map[string]bool // where, so one reply counts once per product
	}
	cands := map[string]*cand{}
	ehlo := strings.Join(ev.EHLO, "\n")
	for _, cl := range clues {
		var text string
		switch cl.where {
		case "banner":
			text = ev.Banner
		case "ehlo":
			text = ehlo
			if cl.re.String()[0] == '^' && !strings.HasPrefix(cl.re.String(), "(?m)") && len(ev.EHLO) > 0 {
				text = ev.EHLO[0] // the greeting line
			}
		default:
			text = ev.Replies[cl.where]
		}
		if text == "" {
			continue
		}
		m := cl.re.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		cd := cands[cl.software]
		if cd == nil {
			cd = &cand{seen: map[string]bool{}}
			cands[cl.software] = cd
		}
		w := cl.weight
		if cd.seen[cl.where] && cl.where != "ehlo" {
			w /= 2 // a second clue from the same reply adds little
		}
		cd.seen[cl.where] = true
		cd.score += w
		cd.clues = append(cd.clues, cl.why)
		if cl.version > 0 && cl.version < len(m) && m[cl.version] != "" && cd.version == "" {
			cd.version = m[cl.version]
		}
	}
	// Zimbra is Postfix underneath: a Zimbra banner on a Postfix-speaking
	// server is Zimbra.
	if z, p := cands[Zimbra], cands[Postfix]; z != nil && p != nil {
		z.score += p.score / 2
		z.clues = append(z.clues, "replies in Postfix words (Zimbra's MTA is Postfix)")
		delete(cands, Postfix)
	}
	names := make([]string, 0, len(cands))
	for n := range cands {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if cands[names[i]].score != cands[names[j]].score {
			return cands[names[i]].score > cands[names[j]].score
		}
		return names[i] < names[j]
	})
	if len(names) == 0 {
		return Identification{Confidence: "none", Clues: []string{}}
	}
	best := cands[names[0]]
	id := Identification{Software: names[0], Version: best.version, Clues: best.clues}
	id.Score = min(best.score, 1)
	id.Score = float64(int(id.Score*100+0.5)) / 100
	levels := []string{"low", "medium", "high"}
	level := 0
	switch {
	case id.Score >= 0.8:
		level = 2
	case id.Score >= 0.45:
		level = 1
	}
	if len(names) > 1 {
		second := cands[names[1]].score
		id.RunnerUp = fmt.Sprintf("%s (%.2f)", names[1], min(second, 1))
		if second >= best.score*0.75 && level > 0 {
			level-- // two products fit about as well
		}
	}
	id.Confidence = levels[level]
	return id
}
