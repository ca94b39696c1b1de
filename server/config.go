package server

import (
	"errors"
	"flag"
	"fmt"
	"github.com/sluicehq/sluice/limits"
	"io"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/outbox"
	"github.com/sluicehq/sluice/tenant/source"
)

// Config is the whole configuration of a Sluice gateway (protocol.md §10). Its zero
// value means the defaults; LoadConfig fills it from SLUICE_* environment
// variables and flags, and Validate checks it before anything starts.
type Config struct {
	Addr string // listen address (":8080"; "127.0.0.1:8080" with Dev)

	JWTSecret     string        // HMAC secret for HS256/384/512
	JWTPublicKey  string        // path of a PEM public key (RS*, PS*, ES*, EdDSA)
	JWKSURL       string        // JWKS endpoint, cached and refreshed
	JWTAlgorithms []string      // allow-list; derived from the key(s) when empty
	JWTIssuer     string        // required "iss" when set
	JWTAudience   string        // required "aud" when set
	JWTLeeway     time.Duration // clock-skew allowance on exp/nbf
	APIKeysFile   string        // JSON array of hashed API keys
	PublishKeys   []string      // publisher keys; none means publishing is off

	Membership              string        // token | file:<path> | postgres | http:<url>
	PostgresURL             string        // membership postgres: connection URL
	MembershipQuery         string        // membership postgres: query with $1 user, $2 tenant
	MembershipTenantSetting string        // membership postgres: setting set to the tenant first
	MembershipCacheTTL      time.Duration // membership postgres/http: cache lifetime

	HistorySize     int           // events kept per channel (1000)
	HistoryTTL      time.Duration // how long they are kept (1h)
	KeepAlive       time.Duration // keep-alive comment interval (15s)
	Retry           time.Duration // retry hint sent to clients (2s)
	MaxChannels     int           // channels per stream (16)
	MaxEventBytes   int           // compact data limit per event (65536)
	MaxBodyBytes    int64         // request body limit of POST endpoints (8 MiB)
	DrainSpread     time.Duration // upper bound of drain retry hints (10s)
	DrainTimeout    time.Duration // how long the drain may take (30s)
	RecheckInterval time.Duration // membership recheck on open streams (60s)
	RevocationTTL   time.Duration // how long a revocation refuses older credentials (24h)
	QueueSize       int           // events pending towards a client that does not read before slow-consumer (1024)
	MaxPendingBytes int           // bytes pending towards a client that does not read before slow-consumer (4 MiB)
	DisablePark     bool          // SLUICE_PARK=false: every stream keeps a goroutine of its own
	WriteTimeout    time.Duration // one write to a stream may take at most (10s)
	WriteCoalesce   time.Duration // least time between two writes to one stream (30ms); negative: none
	AllowOrigins    []string      // CORS origins, or "*"

	MaxStreamsPerUser   int      // open streams per user of a tenant (64)
	MaxStreamsPerTenant int      // open streams per tenant on this instance (20000)
	ConnRate            float64  // new streams per second per client address (50)
	ConnBurst           int      // burst allowance of ConnRate (100)
	MaxHeaderBytes      int      // request header limit (16384) → 431
	MaxURLBytes         int      // request target limit (8192) → 414
	TrustedProxies      []string // CIDRs of proxies whose X-Forwarded-For names the client

	HeaderTimeout          time.Duration // a request head must arrive within (10s)
	BodyTimeout            time.Duration // a request body must arrive within (30s)
	MaxPendingConns        int           // connections without a complete request head (4096)
	MaxPendingConnsPerAddr int           // the same, per client address (256)
	TicketRate             float64       // new stream tickets per second per user (10)
	TicketBurst            int           // burst allowance of TicketRate (32)
	MaxTicketsPerUser      int           // outstanding stream tickets per user (64)

	RoutesFile  string // feature endpoints file (see docs/guide.md)
	MetricsAddr string // separate listener for /metrics; empty: served on Addr

	Broker       string // memory | redis
	RedisURL     string // redis://[:password@]host:port/<db>, rediss:// for TLS
	RedisPrefix  string // key and Pub/Sub prefix ("sluice:")
	DjangoIngest string // Redis Pub/Sub channel to ingest django-eventstream messages from

	Outbox      string        // off | postgres: relay an outbox table of SLUICE_POSTGRES_URL
	OutboxTable string        // outbox table name ("sluice_outbox")
	OutboxPoll  time.Duration // outbox polling fallback without a notification (1s)
	OutboxBatch int           // outbox rows read per transaction (2000)

	LogLevel  string // debug | info | warn | error
	LogFormat string // text | json

	Dev bool // development mode: generated secret, demo tenant, demo page

	// DevStateFile is where Dev keeps its signing secret, publisher key and
	// demo tenant (JSON, mode 0600), so that its tokens outlive a restart;
	// empty: new ones at every start. The sluice command uses
	// DefaultDevStateFile.
	DevStateFile string
}

// MaxChannelsLimit is the highest SLUICE_MAX_CHANNELS: the cursor of a
// stream names each of its channels in at most 47 bytes plus a separator, and
// a cursor is at most 1024 bytes (protocol.md §5).
const MaxChannelsLimit = 21

// setting is one configuration variable: its environment name, the flag
// derived from it, its default and how it is stored.
type setting struct {
	env  string
	def  string
	help string
	set  func(c *Config, v string) error
}

func (s setting) flagName() string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.env, "SLUICE_")), "_", "-")
}

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func list(p func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*p(c) = out
		return nil
	}
}

func dur(p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("not a duration (use Go syntax such as 15s): %q", v)
		}
		if d < 0 {
			return fmt.Errorf("must not be negative: %q", v)
		}
		*p(c) = d
		return nil
	}
}

// posDur is dur for settings where zero makes no sense.
func posDur(p func(*Config) *time.Duration) func(*Config, string) error {
	set := dur(p)
	return func(c *Config, v string) error {
		if err := set(c, v); err != nil {
			return err
		}
		if *p(c) == 0 {
			return fmt.Errorf("must be more than zero: %q", v)
		}
		return nil
	}
}

func num(p func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("must be a positive whole number: %q", v)
		}
		*p(c) = n
		return nil
	}
}

// settings lists every variable of protocol.md §10 and the ones Sluice adds, in the
// order of the README's table.
var settings = []setting{
	{"SLUICE_ADDR", ":8080", "listen address (127.0.0.1:8080 with --dev)", str(func(c *Config) *string { return &c.Addr })},
	{"SLUICE_JWT_SECRET", "", "HMAC secret (HS256/384/512)", str(func(c *Config) *string { return &c.JWTSecret })},
	{"SLUICE_JWT_PUBLIC_KEY", "", "path of a PEM public key (RS*, PS*, ES*, EdDSA)", str(func(c *Config) *string { return &c.JWTPublicKey })},
	{"SLUICE_JWKS_URL", "", "JWKS endpoint, cached and refreshed", str(func(c *Config) *string { return &c.JWKSURL })},
	{"SLUICE_JWT_ALGORITHMS", "", "comma list of allowed algorithms (default: derived from the keys)", list(func(c *Config) *[]string { return &c.JWTAlgorithms })},
	{"SLUICE_JWT_ISSUER", "", "required iss claim", str(func(c *Config) *string { return &c.JWTIssuer })},
	{"SLUICE_JWT_AUDIENCE", "", "required aud claim", str(func(c *Config) *string { return &c.JWTAudience })},
	{"SLUICE_JWT_LEEWAY", "0s", "clock-skew allowance on exp/nbf", dur(func(c *Config) *time.Duration { return &c.JWTLeeway })},
	{"SLUICE_API_KEYS_FILE", "", `JSON array [{"hash":"sha256:<hex>","user":"…","tenant":"<uuid>"}]`, str(func(c *Config) *string { return &c.APIKeysFile })},
	{"SLUICE_PUBLISH_KEYS", "", "comma list of publisher keys (none: publishing off)", list(func(c *Config) *[]string { return &c.PublishKeys })},
	{"SLUICE_MEMBERSHIP", "token", "membership source: token, file:<path>, postgres, http:<url>", str(func(c *Config) *string { return &c.Membership })},
	{"SLUICE_POSTGRES_URL", "", "PostgreSQL URL of the postgres membership source", str(func(c *Config) *string { return &c.PostgresURL })},
	{"SLUICE_MEMBERSHIP_QUERY", "", "postgres membership query ($1 user, $2 tenant; a row means member)", str(func(c *Config) *string { return &c.MembershipQuery })},
	{"SLUICE_MEMBERSHIP_TENANT_SETTING", "app.tenant_id", "setting set to the tenant (SET LOCAL) before the query, for row-level security", str(func(c *Config) *string { return &c.MembershipTenantSetting })},
	{"SLUICE_MEMBERSHIP_CACHE_TTL", "5s", "how long postgres/http membership answers are cached", posDur(func(c *Config) *time.Duration { return &c.MembershipCacheTTL })},
	{"SLUICE_HISTORY_SIZE", "1000", "events kept per channel", num(func(c *Config) *int { return &c.HistorySize })},
	{"SLUICE_HISTORY_TTL", "1h", "how long events are kept", posDur(func(c *Config) *time.Duration { return &c.HistoryTTL })},
	{"SLUICE_KEEPALIVE", "15s", "keep-alive comment interval", posDur(func(c *Config) *time.Duration { return &c.KeepAlive })},
	{"SLUICE_RETRY", "2s", "retry: sent to clients", posDur(func(c *Config) *time.Duration { return &c.Retry })},
	{"SLUICE_MAX_CHANNELS", "16", "channels per stream (at most 21, so that a cursor fits in 1024 bytes)", num(func(c *Config) *int { return &c.MaxChannels })},
	{"SLUICE_MAX_EVENT_BYTES", "65536", "compact data limit per event", num(func(c *Config) *int { return &c.MaxEventBytes })},
	{"SLUICE_MAX_BODY_BYTES", "8388608", "request body limit of POST endpoints", func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("must be a positive whole number: %q", v)
		}
		c.MaxBodyBytes = n
		return nil
	}},
	{"SLUICE_DRAIN_SPREAD", "10s", "upper bound of the retry hints sent when draining", posDur(func(c *Config) *time.Duration { return &c.DrainSpread })},
	{"SLUICE_DRAIN_TIMEOUT", "30s", "how long the drain may take", posDur(func(c *Config) *time.Duration { return &c.DrainTimeout })},
	{"SLUICE_RECHECK_INTERVAL", "60s", "membership recheck on open streams", posDur(func(c *Config) *time.Duration { return &c.RecheckInterval })},
	{"SLUICE_REVOCATION_TTL", "24h", "how long a revocation refuses older credentials", posDur(func(c *Config) *time.Duration { return &c.RevocationTTL })},
	{"SLUICE_QUEUE_SIZE", "1024", "events pending towards a client that does not read before slow-consumer (events the server holds back for coalescing do not count)", num(func(c *Config) *int { return &c.QueueSize })},
	{"SLUICE_MAX_PENDING_BYTES", "4194304", "bytes pending towards a client that does not read before slow-consumer", num(func(c *Config) *int { return &c.MaxPendingBytes })},
	{"SLUICE_PARK", "true", "serve HTTP/1.1 streams on Linux without a goroutine each (false: one goroutine per stream, as HTTP/2 and TLS streams)", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("must be true or false: %q", v)
		}
		c.DisablePark = !b
		return nil
	}},
	{"SLUICE_WRITE_TIMEOUT", "10s", "how long one write to a stream may take", posDur(func(c *Config) *time.Duration { return &c.WriteTimeout })},
	{"SLUICE_MAX_STREAMS_PER_USER", "64", "open streams per user of a tenant", num(func(c *Config) *int { return &c.MaxStreamsPerUser })},
	{"SLUICE_MAX_STREAMS_PER_TENANT", "20000", "open streams per tenant on this instance", num(func(c *Config) *int { return &c.MaxStreamsPerTenant })},
	{"SLUICE_CONN_RATE", "50", "new streams per second per client address", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("must be a positive number: %q", v)
		}
		c.ConnRate = f
		return nil
	}},
	{"SLUICE_CONN_BURST", "100", "burst allowance of SLUICE_CONN_RATE", num(func(c *Config) *int { return &c.ConnBurst })},
	{"SLUICE_MAX_HEADER_BYTES", "16384", "request header limit (431 above)", num(func(c *Config) *int { return &c.MaxHeaderBytes })},
	{"SLUICE_MAX_URL_BYTES", "8192", "request target limit (414 above)", num(func(c *Config) *int { return &c.MaxURLBytes })},
	{"SLUICE_TRUSTED_PROXIES", "", "comma list of proxy CIDRs whose X-Forwarded-For names the client (for SLUICE_CONN_RATE)", list(func(c *Config) *[]string { return &c.TrustedProxies })},
	{"SLUICE_HEADER_TIMEOUT", "10s", "a request head must arrive within this time, or the connection is closed", posDur(func(c *Config) *time.Duration { return &c.HeaderTimeout })},
	{"SLUICE_BODY_TIMEOUT", "30s", "a request body must arrive within this time (408); a body no handler reads closes the connection at once", posDur(func(c *Config) *time.Duration { return &c.BodyTimeout })},
	{"SLUICE_MAX_PENDING_CONNS", "4096", "connections that have not sent a complete request head (new or idle); past it the oldest is closed", num(func(c *Config) *int { return &c.MaxPendingConns })},
	{"SLUICE_MAX_PENDING_CONNS_PER_ADDR", "256", "the same per client address (trusted proxies exempt); past it the address's oldest is closed with a 429", num(func(c *Config) *int { return &c.MaxPendingConnsPerAddr })},
	{"SLUICE_TICKET_RATE", "10", "new stream tickets per second per user (429 above)", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || math.IsInf(f, 0) {
			return fmt.Errorf("must be a positive number: %q", v)
		}
		c.TicketRate = f
		return nil
	}},
	{"SLUICE_TICKET_BURST", "32", "burst allowance of SLUICE_TICKET_RATE", num(func(c *Config) *int { return &c.TicketBurst })},
	{"SLUICE_MAX_TICKETS_PER_USER", "64", "stream tickets a user may hold unredeemed on this instance (429 above)", num(func(c *Config) *int { return &c.MaxTicketsPerUser })},
	{"SLUICE_ROUTES_FILE", "", "feature endpoints: paths mapped to channels, with authorizers", str(func(c *Config) *string { return &c.RoutesFile })},
	{"SLUICE_METRICS_ADDR", "", "separate listen address for /metrics (default: served on SLUICE_ADDR)", str(func(c *Config) *string { return &c.MetricsAddr })},
	{"SLUICE_WRITE_COALESCE", "30ms", "writes to one stream are due at least this far apart: events arriving faster share a write; a write the server made more than a window late does not delay the next (0s: write each at once)", func(c *Config, v string) error {
		if err := dur(func(c *Config) *time.Duration { return &c.WriteCoalesce })(c, v); err != nil {
			return err
		}
		if c.WriteCoalesce == 0 {
			c.WriteCoalesce = -1 // explicitly none
		}
		return nil
	}},
	{"SLUICE_ALLOW_ORIGINS", "", "CORS origins, comma list or *", list(func(c *Config) *[]string { return &c.AllowOrigins })},
	{"SLUICE_BROKER", "memory", "memory or redis", str(func(c *Config) *string { return &c.Broker })},
	{"SLUICE_REDIS_URL", "", "redis://[:password@]host:port/<db> (rediss:// for TLS; a cluster: several host:port separated by commas)", str(func(c *Config) *string { return &c.RedisURL })},
	{"SLUICE_REDIS_PREFIX", "sluice:", "prefix of every Redis key and Pub/Sub channel", str(func(c *Config) *string { return &c.RedisPrefix })},
	{"SLUICE_DJANGO_INGEST", "", "Redis Pub/Sub channel of django-eventstream to ingest (off when empty)", str(func(c *Config) *string { return &c.DjangoIngest })},
	{"SLUICE_OUTBOX", "off", "off, or postgres: publish the rows committed to an outbox table of SLUICE_POSTGRES_URL (see docs/outbox.md)", str(func(c *Config) *string { return &c.Outbox })},
	{"SLUICE_OUTBOX_TABLE", "sluice_outbox", "outbox table (created by `sluice outbox init`); dead letters go to <table>_dead", str(func(c *Config) *string { return &c.OutboxTable })},
	{"SLUICE_OUTBOX_POLL", "1s", "outbox polling fallback: the relay looks at least this often without a notification", posDur(func(c *Config) *time.Duration { return &c.OutboxPoll })},
	{"SLUICE_OUTBOX_BATCH", "2000", "outbox rows read per transaction", num(func(c *Config) *int { return &c.OutboxBatch })},
	{"SLUICE_LOG_LEVEL", "info", "debug, info, warn or error", str(func(c *Config) *string { return &c.LogLevel })},
	{"SLUICE_LOG_FORMAT", "text", "text or json", str(func(c *Config) *string { return &c.LogFormat })},
}

// DefaultConfig returns the configuration with every default of protocol.md §10.
func DefaultConfig() Config {
	var c Config
	for _, s := range settings {
		if s.def != "" {
			_ = s.set(&c, s.def)
		}
	}
	return c
}

// LoadConfig builds the configuration from the defaults, then the environment
// (getenv, usually os.Getenv), then the command-line flags in args (without
// the program name), each overriding the one before. --dev and --help are
// flags only; usage (nil: nowhere) receives the help text. Errors name the variable and the value's problem.
func LoadConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c := DefaultConfig()
	for _, s := range settings {
		if v := getenv(s.env); v != "" {
			if err := s.set(&c, v); err != nil {
				return c, fmt.Errorf("%s: %w", s.env, err)
			}
		}
	}
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	if usage == nil {
		usage = io.Discard
	}
	fs.SetOutput(usage)
	addrSet := getenv("SLUICE_ADDR") != ""
	for _, s := range settings {
		s := s
		fs.Func(s.flagName(), s.help+" ($"+s.env+")", func(v string) error {
			if s.env == "SLUICE_ADDR" {
				addrSet = true
			}
			if err := s.set(&c, v); err != nil {
				return fmt.Errorf("%s: %w", s.env, err)
			}
			return nil
		})
	}
	fs.BoolVar(&c.Dev, "dev", false, "development mode: generated secret, demo tenant and user, printed token and curls, demo page at /")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.Dev && !addrSet {
		c.Addr = "127.0.0.1:8080"
	}
	return c, c.Validate()
}

// fill sets *p to def when it holds the zero value.
func fill[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Validate reports the first problem of the configuration, naming the
// variable to fix, so that a bad configuration fails at start.
func (c *Config) Validate() error {
	d := DefaultConfig()
	// Zero fields take their defaults (a Config built in Go).
	fill(&c.HistorySize, d.HistorySize)
	fill(&c.MaxChannels, d.MaxChannels)
	fill(&c.MaxEventBytes, d.MaxEventBytes)
	fill(&c.QueueSize, d.QueueSize)
	fill(&c.MaxPendingBytes, d.MaxPendingBytes)
	fill(&c.MaxStreamsPerUser, d.MaxStreamsPerUser)
	fill(&c.MaxStreamsPerTenant, d.MaxStreamsPerTenant)
	fill(&c.ConnBurst, d.ConnBurst)
	fill(&c.MaxHeaderBytes, d.MaxHeaderBytes)
	fill(&c.MaxURLBytes, d.MaxURLBytes)
	fill(&c.MaxBodyBytes, d.MaxBodyBytes)
	fill(&c.ConnRate, d.ConnRate)
	fill(&c.HistoryTTL, d.HistoryTTL)
	fill(&c.KeepAlive, d.KeepAlive)
	fill(&c.Retry, d.Retry)
	fill(&c.DrainSpread, d.DrainSpread)
	fill(&c.DrainTimeout, d.DrainTimeout)
	fill(&c.RecheckInterval, d.RecheckInterval)
	fill(&c.RevocationTTL, d.RevocationTTL)
	fill(&c.WriteTimeout, d.WriteTimeout)
	fill(&c.WriteCoalesce, d.WriteCoalesce)
	fill(&c.MembershipCacheTTL, d.MembershipCacheTTL)
	fill(&c.HeaderTimeout, d.HeaderTimeout)
	fill(&c.BodyTimeout, d.BodyTimeout)
	fill(&c.MaxPendingConns, d.MaxPendingConns)
	fill(&c.MaxPendingConnsPerAddr, d.MaxPendingConnsPerAddr)
	fill(&c.TicketRate, d.TicketRate)
	fill(&c.TicketBurst, d.TicketBurst)
	fill(&c.MaxTicketsPerUser, d.MaxTicketsPerUser)
	fill(&c.Addr, d.Addr)
	fill(&c.Membership, d.Membership)
	fill(&c.Broker, d.Broker)
	fill(&c.RedisPrefix, d.RedisPrefix)
	fill(&c.LogLevel, d.LogLevel)
	fill(&c.LogFormat, d.LogFormat)
	fill(&c.MembershipTenantSetting, d.MembershipTenantSetting)
	fill(&c.Outbox, d.Outbox)
	fill(&c.OutboxTable, d.OutboxTable)
	fill(&c.OutboxPoll, d.OutboxPoll)
	fill(&c.OutboxBatch, d.OutboxBatch)

	if c.MaxChannels > MaxChannelsLimit {
		// A cursor names every channel of its stream in at most 1024 bytes.
		return fmt.Errorf("SLUICE_MAX_CHANNELS: at most %d (a cursor must name every channel within 1024 bytes)", MaxChannelsLimit)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("SLUICE_ADDR: %q is not host:port", c.Addr)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("SLUICE_METRICS_ADDR: %q is not host:port", c.MetricsAddr)
		}
	}
	for _, o := range c.AllowOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("SLUICE_ALLOW_ORIGINS: %q is not an origin such as https://app.example.com", o)
		}
	}
	if c.DrainSpread < c.Retry {
		return errors.New("SLUICE_DRAIN_SPREAD: must be at least SLUICE_RETRY")
	}
	if c.KeepAlive < 100*time.Millisecond {
		return errors.New("SLUICE_KEEPALIVE: at least 100ms")
	}
	switch c.Broker {
	case "memory":
	case "redis":
		if c.RedisURL == "" {
			return errors.New("SLUICE_REDIS_URL: required with SLUICE_BROKER=redis")
		}
		u, err := url.Parse(c.RedisURL)
		if err != nil || !slices.Contains([]string{"redis", "rediss", "valkey", "valkeys", "unix"}, u.Scheme) || u.Host == "" && u.Scheme != "unix" {
			return errors.New("SLUICE_REDIS_URL: must look like redis://[:password@]host:port/<db> (rediss:// for TLS; " +
				"a cluster: redis://host1:port1,host2:port2/0 or redis://host1:port1/0?addr=host2:port2; " +
				"Sentinel: redis://sentinel:26379/0?master_set=<name>)")
		}
	default:
		return fmt.Errorf("SLUICE_BROKER: %q is neither memory nor redis", c.Broker)
	}
	if c.DjangoIngest != "" && c.Broker != "redis" {
		return errors.New("SLUICE_DJANGO_INGEST: needs SLUICE_BROKER=redis")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("SLUICE_LOG_LEVEL: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("SLUICE_LOG_FORMAT: %q is neither text nor json", c.LogFormat)
	}
	if err := source.CheckSpec(c.Membership); err != nil { // never quotes a URL's credentials
		return fmt.Errorf("SLUICE_MEMBERSHIP: %w", err)
	}
	if _, err := limits.ParseProxies(c.TrustedProxies); err != nil {
		return fmt.Errorf("SLUICE_TRUSTED_PROXIES: %w", err)
	}
	if c.Membership == "postgres" && c.PostgresURL == "" {
		return errors.New("SLUICE_POSTGRES_URL: required with SLUICE_MEMBERSHIP=postgres")
	}
	switch c.Outbox {
	case "off":
	case "postgres":
		if c.PostgresURL == "" {
			return errors.New("SLUICE_POSTGRES_URL: required with SLUICE_OUTBOX=postgres")
		}
		if err := outbox.CheckURL(c.PostgresURL); err != nil {
			return fmt.Errorf("SLUICE_POSTGRES_URL: %w", err)
		}
		if err := outbox.CheckTable(c.OutboxTable); err != nil {
			return fmt.Errorf("SLUICE_OUTBOX_TABLE: %w", err)
		}
	default:
		return fmt.Errorf("SLUICE_OUTBOX: %q is neither off nor postgres", c.Outbox)
	}
	if c.OutboxBatch > 10000 {
		return errors.New("SLUICE_OUTBOX_BATCH: at most 10000")
	}
	if !c.Dev && c.JWTSecret == "" && c.JWTPublicKey == "" && c.JWKSURL == "" && c.APIKeysFile == "" {
		return errors.New("no way to authenticate users: set SLUICE_JWT_SECRET, SLUICE_JWT_PUBLIC_KEY, SLUICE_JWKS_URL or SLUICE_API_KEYS_FILE (or run with --dev)")
	}
	for _, k := range c.PublishKeys {
		if len(k) < 16 {
			return errors.New("SLUICE_PUBLISH_KEYS: each key must be at least 16 characters")
		}
	}
	return nil
}

// Warnings returns what in c is set but has no effect with the chosen
// broker, one message each, naming the variable and what to do. New logs
// them at start; they do not stop it.
func (c Config) Warnings() []string {
	var out []string
	if c.Broker != "redis" {
		if c.RedisURL != "" {
			out = append(out, "SLUICE_REDIS_URL is set but SLUICE_BROKER is "+c.Broker+
				": it is ignored; set SLUICE_BROKER=redis to use Redis, or unset SLUICE_REDIS_URL")
		}
		if c.RedisPrefix != "" && c.RedisPrefix != "sluice:" {
			out = append(out, "SLUICE_REDIS_PREFIX is set but SLUICE_BROKER is "+c.Broker+
				": it is ignored; set SLUICE_BROKER=redis to use Redis, or unset SLUICE_REDIS_PREFIX")
		}
	}
	return out
}
