package spool

import "time"

// Metrics receives the spool's measurements (obs.Metrics implements it).
type Metrics interface {
	// DirSync: one directory fsync made batch names durable (group
	// commit) and took this long. The names are spare message files
	// (each a future commit; commits themselves need no directory fsync)
	// and removals.
	DirSync(batch int, took time.Duration)
}
