// Command ferretdb-local runs FerretDB 1.x with its embedded SQLite backend on a loopback port.
//
// It embeds FerretDB as a library because the upstream binary built with `go install`
// refuses to start without build/version/version.txt (upstream issue #2982).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on (loopback only)")
	dataDir := flag.String("data", "./data", "directory for the SQLite database files")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn, error")
	// SQLite's synchronous mode under its WAL journal: "full" syncs the log at every commit, "normal"
	// at checkpoints. Both survive a crash of this process; "normal" may lose the last commits to a
	// power loss or an OS crash, as the local Kafka may (it leaves flushing to the OS). FerretDB writes
	// each updated document in a transaction of its own: measured 675 -> 280 µs of CPU and 1.2 -> 0.44 ms
	// per updated document from "full" to "normal" (2,000 updates in bulks of 500).
	synchronous := flag.String("synchronous", "normal", "SQLite synchronous mode: full or normal")
	flag.Parse()

	// Go's collector at its default (GOGC=100) ran for ~15 % of FerretDB's CPU under bulk writes, each
	// document being decoded into short-lived Go values; at 400 the heap grows to five times the live
	// data (tens of MB here) and writes cost 5-25 % less CPU (bench/bench_ferretdb_writes.py). GOGC set
	// in the environment wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	if *synchronous != "full" && *synchronous != "normal" {
		log.Fatalf("synchronous: %q is neither full nor normal", *synchronous)
	}

	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		log.Fatalf("data dir: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatalf("data dir: %v", err)
	}

	// temp_store(memory): the statement journal (the pages one statement changed, kept so that it alone can
	// be undone inside a command's shared transaction) stays in memory; on a file it spilled at 64 KB, and
	// a replace of a lead (twelve indexes) wrote it through pwrite: 14% of FerretDB's CPU in a replace. A
	// bulk ReplaceOne of lead documents 498/478/548 -> 442/433/475 µs a document, a qualification's writes
	// 560/595/630 -> 530/577/558 (bench/bench_write_path.py --binary, 4,000 leads, rounds alternated).
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/?_pragma=synchronous(" + *synchronous + ")&_pragma=temp_store(memory)",
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: parseLevel(*logLevel)})),
	})
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// For profiling only (bench/bench_ferretdb_writes.py --profile): a CPU profile of the whole run,
	// written when the process is stopped. Unset in every normal run.
	if path := os.Getenv("CRM_FERRETDB_CPUPROFILE"); path != "" {
		out, err := os.Create(path)
		if err != nil {
			log.Fatalf("cpu profile: %v", err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			log.Fatalf("cpu profile: %v", err)
		}
		defer func() { pprof.StopCPUProfile(); out.Close() }()
	}

	// kill -USR1 <pid> writes every goroutine's stack to the log: what a stalled command waits on (a
	// lock, a connection of the pool, SQLite). tests/reliability asks for it when a service cannot start.
	dump := make(chan os.Signal, 1)
	signal.Notify(dump, syscall.SIGUSR1)
	go func() {
		for range dump {
			fmt.Fprintf(os.Stderr, "--- goroutines at %s\n", time.Now().UTC().Format(time.RFC3339))
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		}
	}()

	fmt.Fprintf(os.Stderr, "ferretdb-local listening on %s, data in %s\n", *listen, dir)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatalf("ferretdb: %v", err)
	}
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelWarn
	}
	return l
}
