package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	sluiceserver "github.com/sluicehq/sluice/server"
)

// healthcheck is `sluice healthcheck [--url U]`: GET /healthz of the gateway
// that SLUICE_ADDR (or --addr) names, nil on 200. Container images have no
// curl: their HEALTHCHECK runs this.
func healthcheck(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := getenv("SLUICE_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	fs.StringVar(&addr, "addr", addr, "listen address of the gateway ($SLUICE_ADDR)")
	url := fs.String("url", "", "URL to GET instead (default: /healthz on --addr)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("healthcheck: unexpected argument %q", fs.Arg(0))
	}
	if *url == "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("healthcheck: SLUICE_ADDR: %q is not host:port", addr)
		}
		*url = sluiceserver.BaseURL(addr) + "/healthz"
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get(*url)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("healthcheck: %s: no answer within %v", *url, *timeout)
		}
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: %s", *url, resp.Status)
	}
	_, err = fmt.Fprintf(stdout, "%s: %s\n", *url, resp.Status)
	return err
}
