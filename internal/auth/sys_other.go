//go:build !linux

package auth

import "io/fs"

// sysStamp: elsewhere size and modification time alone tell a change.
func sysStamp(fs.FileInfo) (uint64, int64) { return 0, 0 }
