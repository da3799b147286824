# The login shell's profile, standing in for the module's shell init: the
# login environment the guest role wrote, then the line tests wait for.
PS1='[guest]# '
[ -r /run/nixos-shell/login-env.sh ] && . /run/nixos-shell/login-env.sh
echo '@shell_ready@'
