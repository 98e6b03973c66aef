package smtpserver

import "syscall"

// syscallEMFILE is "too many open files": Accept fails with it when the
// process runs out of descriptors, a condition to wait out, not to die of.
const syscallEMFILE = syscall.EMFILE
