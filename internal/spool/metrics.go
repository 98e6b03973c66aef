package spool

import "time"

// Metrics receives the spool's measurements (obs.Metrics implements it).
type Metrics interface {
	// DirSync: one directory fsync made batch commits and removals
	// durable (group commit) and took this long.
	DirSync(batch int, took time.Duration)
}
