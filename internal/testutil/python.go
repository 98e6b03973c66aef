package testutil

import (
	"os/exec"
	"strings"
	"testing"
)

// Python returns a python3 that can import every module given, or skips
// the test saying which Debian packages to install. Debian's packages
// (python3-dkim, python3-authres) install into the system python, which a
// pyenv or venv python3 earlier in PATH does not see, so /usr/bin/python3
// is tried too.
func Python(t testing.TB, debianPackages string, modules ...string) string {
	t.Helper()
	imp := "import " + strings.Join(modules, ", ")
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", imp).Run() == nil {
			return py
		}
	}
	t.Skipf("python3 cannot %q: apt-get install %s (the CI script does)", imp, debianPackages)
	return ""
}
