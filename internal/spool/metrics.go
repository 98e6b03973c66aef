package spool

import "time"

// Metrics receives the spool's measurements (obs.Metrics implements it).
type Metrics interface {
	// DirSync: one directory fsync made batch names durable (group
	// commit) and took this long. The names are spare message files
	// (each a future commit; commits themselves need no directory fsync)
	// and removals.
	DirSync(batch int, took time.Duration)
	// SpareMiss: a Create found no spare file ready and took or made one
	// itself, waiting for a directory fsync before the client heard 354.
	// Steadily rising: the spool makes files on the way to the replies
	// (a backlog larger than the files it keeps, or a file system slow
	// to create them).
	SpareMiss()
}
