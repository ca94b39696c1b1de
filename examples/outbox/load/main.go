// Command outbox-load measures the outbox relay of a running Sluice
// (docs/benchmarks.md):
//
//	drain: commit -rows rows in one transaction and time how long the relay
//	       takes to publish them all (rows relayed per second);
//	rate:  commit single-row transactions at -rate rows/s for -duration
//	       while a stream of every channel is open, and report the
//	       commit→receive latency (p50, p99, max).
//
// The database URL must reach the outbox Sluice relays (same search_path).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
)

const tenant = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"

func main() {
	mode := flag.String("mode", "drain", "drain or rate")
	db := flag.String("db", os.Getenv("SLUICE_POSTGRES_URL"), "PostgreSQL URL of the outbox")
	base := flag.String("sluice", "http://127.0.0.1:8080", "Sluice base URL (rate mode)")
	secret := flag.String("jwt-secret", os.Getenv("SLUICE_JWT_SECRET"), "HS256 secret to mint the stream's token (rate mode)")
	rows := flag.Int("rows", 100000, "rows to commit (drain mode)")
	rate := flag.Int("rate", 1000, "rows per second (rate mode)")
	dur := flag.Duration("duration", 20*time.Second, "how long to insert (rate mode)")
	chans := flag.Int("channels", 16, "channels the rows are spread over")
	writers := flag.Int("writers", 4, "connections inserting (rate mode)")
	perTx := flag.Int("per-tx", 1, "rows per transaction (rate mode)")
	flag.Parse()
	ctx := context.Background()
	names := make([]string, *chans)
	run := time.Now().UnixNano()
	for i := range names {
		names[i] = fmt.Sprintf("load:%s:%x-%d", tenant, run, i)
	}
	switch *mode {
	case "drain":
		drain(ctx, *db, names, *rows)
	case "rate":
		measure(ctx, *db, *base, *secret, names, *rate, *dur, *writers, max(*perTx, 1))
	default:
		log.Fatalf("-mode %q: drain or rate", *mode)
	}
}

func drain(ctx context.Context, db string, names []string, n int) {
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	chs := make([]string, n)
	for i := range chs {
		chs[i] = names[i%len(names)]
	}
	if _, err := tx.Exec(ctx, `INSERT INTO sluice_outbox (channel, event, data)
		SELECT c, 'load.row', jsonb_build_object('n', i) FROM unnest($1::text[]) WITH ORDINALITY AS r(c, i)`, chs); err != nil {
		log.Fatal(err)
	}
	t0 := time.Now()
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	t1 := time.Now()
	for {
		var left int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM sluice_outbox").Scan(&left); err != nil {
			log.Fatal(err)
		}
		if left == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	d := time.Since(t1)
	fmt.Printf("drain: %d rows over %d channels; commit (numbering by the trigger) %v; relayed in %v: %.0f rows/s\n",
		n, len(names), t1.Sub(t0).Round(time.Millisecond), d.Round(time.Millisecond), float64(n)/d.Seconds())
}

func measure(ctx context.Context, db, base, secret string, names []string, rate int, dur time.Duration, writers, perTx int) {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "load", "tenant_id": tenant, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	committed := map[int]time.Time{}
	var lat []time.Duration
	received := 0
	ready := make(chan struct{})
	go func() {
		q := url.Values{"channel": names}
		req, _ := http.NewRequest(http.MethodGet, base+"/events?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			log.Fatalf("stream: %v %v", err, resp)
		}
		close(ready)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			now := time.Now()
			var d struct{ N *int }
			if json.Unmarshal([]byte(line), &d) != nil || d.N == nil {
				continue
			}
			mu.Lock()
			if t, ok := committed[*d.N]; ok {
				lat = append(lat, now.Sub(t))
			}
			received++
			mu.Unlock()
		}
	}()
	<-ready
	total := int(dur.Seconds() * float64(rate))
	next := make(chan int, 1024)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		conn, err := pgx.Connect(ctx, db)
		if err != nil {
			log.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close(ctx)
			for first := range next {
				tx, err := conn.Begin(ctx)
				if err != nil {
					log.Fatal(err)
				}
				for n := first; n < first+perTx; n++ {
					if _, err := tx.Exec(ctx, "INSERT INTO sluice_outbox (channel, event, data) VALUES ($1, 'load.row', $2)",
						names[n%len(names)], fmt.Sprintf(`{"n": %d}`, n)); err != nil {
						log.Fatal(err)
					}
				}
				if err := tx.Commit(ctx); err != nil {
					log.Fatal(err)
				}
				now := time.Now()
				mu.Lock()
				for n := first; n < first+perTx; n++ {
					committed[n] = now
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(time.Second * time.Duration(perTx) / time.Duration(rate))
	late := 0
	total -= total % perTx
	for n := 0; n < total; n += perTx {
		<-tick.C
		select {
		case next <- n:
		default:
			late++
			next <- n
		}
	}
	close(next)
	wg.Wait()
	took := time.Since(start)
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		r := received
		mu.Unlock()
		if r >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(10 * time.Microsecond)
	}
	fmt.Printf("rate: %d rows in %v (%.0f rows/s committed, %d per transaction, %d writers, %d channels, %d times the writers were behind); received %d; commit→receive p50 %v p99 %v max %v\n",
		total, took.Round(time.Millisecond), float64(total)/took.Seconds(), perTx, writers, len(names), late, received, pct(0.5), pct(0.99), pct(1))
}
