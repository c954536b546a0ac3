# Shared by the .ci scripts (sourced, not run).

# The supported Python versions, read from setup.cfg's classifiers: one place.
supported_pythons() {
    sed -n 's/^ *Programming Language :: Python :: \(3\.[0-9][0-9]*\) *$/\1/p' setup.cfg | sort -V
}

# The newest installed pyenv interpreter of minor version $1 (e.g. 3.10 -> 3.10.13).
pyenv_version_of() {
    pyenv versions --bare --skip-aliases | grep -E "^${1//./\\.}\.[0-9]+$" | sort -V | tail -n 1
}

# The literal block that follows the README paragraph starting with $1, as one line.
readme_command() {
    awk -v head="$1" '
        index($0, head) == 1 { found = 1; next }
        found && /^    [^ ]/ { sub(/^    /, ""); print; exit }
    ' README.rst
}

step() {
    printf '\n==> [%4ds] %s\n' "$(($(date +%s) - ${CI_START:-$(date +%s)}))" "$*"
}
