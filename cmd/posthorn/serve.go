package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/ctl"
	"github.com/posthorn/posthorn/internal/delivery"
	"github.com/posthorn/posthorn/internal/directory"
	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/lmtp"
	"github.com/posthorn/posthorn/internal/logbuf"
	"github.com/posthorn/posthorn/internal/maildir"
	"github.com/posthorn/posthorn/internal/policy"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/smtpserver"
	"github.com/posthorn/posthorn/internal/spool"
	"github.com/posthorn/posthorn/internal/srs"
	"github.com/posthorn/posthorn/internal/submission"
)

// drainTime is how long SIGTERM lets sessions in progress finish.
const drainTime = 30 * time.Second

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "configuration `file` (default: the embedded development configuration)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	// Sessions and deliveries log through a buffer written by one
	// goroutine (internal/logbuf), not straight to stderr.
	lw := logbuf.New(stderr)
	log := newLogger(cfg, lw)
	if cpus, procs := raiseProcs(); procs != cpus {
		log.Info("scheduler: more Ps than CPUs, for the goroutines blocked on the disk", "gomaxprocs_default", cpus, "gomaxprocs", procs)
	}
	err = serve(ctx, cfg, log, stdout)
	if err != nil {
		log.Error("posthorn stopped", "err", err)
	}
	lw.Close()
	if err != nil {
		fmt.Fprintln(stderr, "posthorn:", err)
		return 1
	}
	return 0
}

// loadConfig reads file, or the embedded default when file is "".
func loadConfig(file string) (*config.Config, error) {
	if file == "" {
		return config.Default(), nil
	}
	return config.Load(file)
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// accountsPath is where `posthorn user` keeps the submission accounts.
func accountsPath(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "accounts") }

// serve wires the parts together and runs until ctx is done.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, stdout io.Writer) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	// Searchable by all, readable by none: local users reach submit.sock
	// (posthorn sendmail) and nothing else; everything inside is 0700/0600.
	if err := os.Chmod(cfg.DataDir, 0o711); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	accounts, err := openAccounts(cfg)
	if err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	dir, err := newDirectory(cfg, accounts)
	if err != nil {
		return err
	}
	mx, stopMetrics, err := startMetrics(cfg, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(cfg.DataDir, "spool"), Logger: log, Metrics: mx})
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer sp.Close()

	// Certificates: configured files (reloaded when they change), ACME, or
	// a self-signed one; and the MTA-STS policy host when configured.
	tlsSvc, err := newTLSService(cfg, log)
	if err != nil {
		return err
	}
	defer tlsSvc.Close()

	srsKey, srsOld, err := srs.LoadOrCreateKey(filepath.Join(cfg.DataDir, "srs.key"))
	if err != nil {
		return fmt.Errorf("SRS key: %w", err)
	}
	rewriter, err := srs.New(srs.Options{Domain: firstDomain(cfg), Key: srsKey, OldKeys: srsOld, IsLocal: dir.IsLocalDomain})
	if err != nil {
		return fmt.Errorf("SRS: %w", err)
	}
	resolver := dns.NewClient(dns.ClientOptions{Servers: cfg.DNS.Servers})
	remote, outTLS, err := newOutbound(cfg, resolver, log, mx)
	if err != nil {
		return err
	}
	defer remote.Close()
	sealer, err := newARCSealer(cfg)
	if err != nil {
		return err
	}
	fwd := &forwarder{sp: sp, srs: rewriter, seal: sealer, log: log}
	bnc := &bouncer{hostname: cfg.Hostname, postmaster: "postmaster@" + firstDomain(cfg), lifetime: cfg.Queue.Lifetime,
		isLocal: dir.IsLocalDomain, sp: sp, log: log}
	router := delivery.New(delivery.Options{
		Directory:  dir,
		MailRoot:   filepath.Join(cfg.DataDir, "mail"),
		Maildir:    &maildir.Deliverer{Hostname: cfg.Hostname},
		LMTP:       lmtp.New(lmtp.Options{Hostname: cfg.Hostname, Logger: log}),
		Remote:     remote.Deliver,
		Forward:    fwd.forward,
		ReverseSRS: reverseSRS(rewriter),
		Logger:     log,
	})
	q := queue.New(queue.Options{
		Spool:        sp,
		Deliver:      router.Deliver,
		OnFailed:     bnc.failed,
		OnDelivered:  bnc.delivered,
		OnDelayed:    bnc.delayed,
		DelayWarning: cfg.Queue.DelayWarning,
		Metrics:      mx,
		Logger:       log,
		FirstRetry:   cfg.Queue.FirstRetry,
		MaxRetry:     cfg.Queue.MaxRetry,
		MaxLifetime:  cfg.Queue.Lifetime,
	})
	fwd.q, bnc.q = q, q
	mx.QueueSizes(q.Sizes)
	if err := q.Start(ctx); err != nil {
		return fmt.Errorf("queue: %w", err)
	}

	// Mail from our users (submission ports, trusted networks, sendmail)
	// gets Date, Message-ID and DKIM signatures.
	signer, err := newSigner(cfg)
	if err != nil {
		return err
	}
	prep := submission.New(submission.Options{Hostname: cfg.Hostname, Signer: signer})
	outTLS.start(ctx, sp, q, prep.Prepare) // MTA-STS refreshes, TLS-RPT reports

	// The admin and submit sockets (posthorn queue, posthorn sendmail).
	ctlSrv := ctl.NewServer(ctl.Options{
		Spool: sp,
		Queue: q,
		Submit: newLocalSubmit(localSubmitOptions{
			Hostname: cfg.Hostname,
			Origin:   firstDomain(cfg),
			Spool:    sp,
			Queued:   q.Submit,
			Prepare:  prep.Prepare,
		}),
		Logger:        log,
		MessageSize:   cfg.Limits.MessageSize,
		MaxRecipients: cfg.Limits.Recipients,
	})
	if err := ctlSrv.Listen(ctl.AdminSocket(cfg.DataDir), ctl.SubmitSocket(cfg.DataDir)); err != nil {
		return err
	}
	ctlCtx, cancelCtl := context.WithCancel(context.Background())
	ctlDone := make(chan error, 1)
	go func() { ctlDone <- ctlSrv.Serve(ctlCtx) }()
	stopCtl := sync.OnceFunc(func() {
		cancelCtl()
		if err := <-ctlDone; err != nil {
			log.Warn("ctl sockets", "err", err)
		}
	})
	defer stopCtl()

	pol := policy.New(policy.Options{
		LocalDomain: dir.IsLocalDomain,
		LocalRecipient: func(addr string) (bool, error) {
			_, err := dir.Resolve(addr)
			if errors.Is(err, directory.ErrUnknownUser) || errors.Is(err, directory.ErrBadAddress) {
				return false, nil
			}
			return err == nil, err
		},
		PostmasterDomain: firstDomain(cfg),
		ReverseSRS:       reverseSRS(rewriter),
		TrustedNetworks:  cfg.Relay.TrustedNetworks,
		SenderMustOwn:    cfg.Submission.SenderMustOwn,
		Owns:             accounts.Owns,
	})
	check, dropHeader := newChecks(cfg, resolver, pol, prep, log)
	abuse, err := newAbuse(cfg, resolver, log)
	if err != nil {
		return err
	}
	defer abuse.Close()
	srv := smtpserver.New(smtpserver.Options{
		Hostname:   cfg.Hostname,
		Spool:      sp,
		Queued:     func(env *spool.Envelope) { q.Submit(env.ID) },
		Policy:     pol,
		Check:      check,
		DropHeader: dropHeader,
		Auth:       accounts,
		TLS:        tlsSvc.ServerConfig(),
		// In the configuration 0 means "no limit"; smtpserver takes 0
		// as "the default", so an unlimited value is passed as such.
		Limits: smtpserver.Limits{
			MessageSize:      int64(unlimited(int(min(cfg.Limits.MessageSize, math.MaxInt32)))),
			Recipients:       unlimited(cfg.Limits.Recipients),
			Connections:      unlimited(cfg.Limits.Connections),
			ConnectionsPerIP: unlimited(cfg.Limits.ConnectionsPerIP),
			CommandTimeout:   cfg.Limits.CommandTimeout,
			DataTimeout:      cfg.Limits.DataTimeout,
			ErrorsPerSession: unlimited(cfg.Limits.ErrorsPerSession),
			AuthFailuresIP:   unlimited(cfg.Limits.AuthFailuresPerIP),
			LineLength:       cfg.Limits.LineLength,
			MinFreeSpace:     cfg.Limits.MinFreeSpace,
		},
		Admission: abuse.Admission,
		Screen:    abuse.Screen,
		Logger:    log,
		Metrics:   mx,
	})

	// Listen on everything before serving anything: a port that cannot be
	// had stops the start, nothing runs half-configured.
	var lns []bound
	for _, l := range []struct {
		role  smtpserver.Role
		addrs []string
	}{
		{smtpserver.RoleSMTP, cfg.Listen.SMTP},
		{smtpserver.RoleSubmission, cfg.Listen.Submission},
		{smtpserver.RoleSubmissions, cfg.Listen.Submissions},
	} {
		for _, a := range l.addrs {
			// No TCP keepalive on SMTP sessions (as Postfix): their own
			// timeouts end idle ones, and Go's default (a probe every 15
			// s) would cost four setsockopt calls per connection and
			// probe traffic for every idle session.
			lc := net.ListenConfig{KeepAlive: -1}
			ln, err := lc.Listen(context.Background(), listenNetwork(a), a)
			if err != nil {
				for _, b := range lns {
					b.ln.Close()
				}
				return fmt.Errorf("cannot listen for %s on %s: %w", l.role, a, err)
			}
			lns = append(lns, bound{ln, l.role})
		}
	}
	errc := make(chan error, len(lns))
	for _, b := range lns {
		go func() {
			if err := srv.Serve(b.ln, b.role); err != nil && !errors.Is(err, smtpserver.ErrServerClosed) {
				errc <- fmt.Errorf("%s listener %s: %w", b.role, b.ln.Addr(), err)
			}
		}()
	}
	tlsSvc.Start()
	printBanner(stdout, cfg, lns)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining sessions", "max_wait", drainTime)
	case runErr = <-errc:
	}
	dctx, cancel := context.WithTimeout(context.Background(), drainTime)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("sessions cut off at the end of the drain time", "err", err)
	}
	stopCtl() // no more submissions or queue commands
	qctx, qcancel := context.WithTimeout(context.Background(), drainTime)
	defer qcancel()
	if err := q.Stop(qctx); err != nil {
		log.Warn("deliveries cut off at shutdown; they will be retried", "err", err)
	}
	log.Info("stopped")
	return runErr
}

// unlimited maps the configuration's 0 ("no limit") to the largest value.
func unlimited(n int) int {
	if n <= 0 {
		return math.MaxInt32
	}
	return n
}

// listenNetwork keeps an IPv6 literal listener IPv6-only, so that
// "0.0.0.0:25" and "[::]:25" can both be listened on, as configured.
func listenNetwork(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() == nil {
			return "tcp6"
		}
		return "tcp4"
	}
	return "tcp"
}

// reverseSRS undoes SRS for bounces coming back to forwarded mail:
// isSRS says whether addr is an SRS address at all; err whether it is
// forged or expired.
func reverseSRS(rw *srs.Rewriter) func(addr string) (orig string, isSRS bool, err error) {
	return func(addr string) (string, bool, error) {
		at := strings.LastIndexByte(addr, '@')
		if at < 0 || !srs.IsSRS(addr[:at]) {
			return "", false, nil
		}
		orig, err := rw.Reverse(addr)
		return orig, true, err
	}
}

func firstDomain(cfg *config.Config) string {
	if len(cfg.Domains) > 0 {
		return cfg.Domains[0].Name
	}
	return cfg.Hostname
}

func newDirectory(cfg *config.Config, accounts *auth.Store) (*directory.Directory, error) {
	var doms []directory.Domain
	for _, d := range cfg.Domains {
		doms = append(doms, directory.Domain{
			Name: d.Name, AcceptAny: d.AcceptAny, CatchAll: d.CatchAll, Mailboxes: d.Mailboxes, Delivery: d.Delivery,
		})
	}
	dir, err := directory.New(directory.Options{
		Domains:             doms,
		Aliases:             cfg.Aliases,
		SubaddressDelimiter: cfg.Addressing.SubaddressDelimiter,
		UserExists:          accounts.Exists,
	})
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	return dir, nil
}

// forwarder queues a copy of a message for the addresses an alias points
// to at other domains, with the envelope sender rewritten by SRS so that
// the copy keeps passing SPF at its destination.
type forwarder struct {
	sp   *spool.Spool
	q    *queue.Manager
	srs  *srs.Rewriter
	seal *arcSealer // nil: forwarded copies are not ARC-sealed
	log  *slog.Logger
}

func (f *forwarder) forward(ctx context.Context, env *spool.Envelope, body func() (io.ReadCloser, error), to []string) error {
	from, err := f.srs.Forward(env.From)
	if err != nil {
		return err
	}
	rc, err := body()
	if err != nil {
		return err
	}
	defer rc.Close()
	fwd := spool.Envelope{
		From: from, SMTPUTF8: env.SMTPUTF8, Body: env.Body,
		EnvID: env.EnvID, Ret: env.Ret, Listener: "forward", ClientAddr: env.ClientAddr,
	}
	if f.seal != nil {
		set, err := f.seal.seal(body)
		if err != nil {
			// A broken chain or a message we cannot seal is still
			// forwarded, as it would be without ARC.
			f.log.Warn("forwarding without an ARC set", "id", env.ID, "err", err)
		}
		fwd.Prepend = set
	}
	for _, a := range to {
		fwd.Recipients = append(fwd.Recipients, spool.Recipient{Addr: a})
	}
	_, err = enqueue(ctx, f.sp, f.q, fwd, rc)
	return err
}

// bound is a listening socket and what it is for.
type bound struct {
	ln   net.Listener
	role smtpserver.Role
}

// printBanner tells a newcomer where posthorn listens and how to try it.
func printBanner(w io.Writer, cfg *config.Config, lns []bound) {
	var parts []string
	smtpAddr := ""
	for _, b := range lns {
		parts = append(parts, b.role.String()+" "+b.ln.Addr().String())
		if b.role == smtpserver.RoleSMTP && smtpAddr == "" {
			smtpAddr = b.ln.Addr().String()
		}
	}
	fmt.Fprintf(w, "posthorn %s: listening on %s\n", version, strings.Join(parts, ", "))
	fmt.Fprintf(w, "data in %s; local mail lands in %s\n", cfg.DataDir, filepath.Join(cfg.DataDir, "mail", "<domain>", "<user>", "new"))
	if smtpAddr != "" && len(cfg.Domains) > 0 {
		fmt.Fprintf(w, "try it: printf 'Subject: hello\\r\\n\\r\\nIt works.\\r\\n' | curl -sS smtp://%s --mail-from you@%s --mail-rcpt you@%s -T -\n",
			smtpAddr, cfg.Domains[0].Name, cfg.Domains[0].Name)
	}
}
