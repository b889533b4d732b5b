# bash completion for ferry                                -*- shell-script -*-
_ferry()
{
	local cur prev cmd i
	COMPREPLY=()
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	local commands="keygen export verify inspect import unpack cache help"
	local common="--help --version --quiet --verbose --progress --ca-file --insecure-registry --authfile"

	cmd=
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-*) ;;
		*) cmd=${COMP_WORDS[i]}; break ;;
		esac
	done
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
		return
	fi
	case $prev in
	--progress) COMPREPLY=($(compgen -W "auto plain json none" -- "$cur")); return ;;
	--compress) COMPREPLY=($(compgen -W "zstd gzip none" -- "$cur")); return ;;
	--referrers) COMPREPLY=($(compgen -W "all none" -- "$cur")); return ;;
	--type) COMPREPLY=($(compgen -W "ecdsa-p256 ed25519 rsa-3072" -- "$cur")); return ;;
	--platform) COMPREPLY=($(compgen -W "all linux/amd64 linux/arm64 linux/arm/v7" -- "$cur")); return ;;
	--cache | --state-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
	--jobs | --sequence | --channel | --older-than | --insecure-registry | --to | --split-size) return ;;
	--key | --ca-file | --authfile | --report | --passphrase-file | -f | --images-file | -o | --output | --base | --verify-cosign-key | --cosign-key)
		COMPREPLY=($(compgen -f -- "$cur")); return ;;
	esac
	local opts
	case $cmd in
	keygen) opts="--output --type --passphrase-file" ;;
	export) opts="--images-file --output --key --passphrase-file --platform --jobs --cache --compress --report --channel --sequence --base --split-size --referrers --verify-cosign-key" ;;
	verify) opts="--key --cosign-key --base --json" ;;
	inspect) opts="--json" ;;
	unpack) opts="--key --output" ;;
	import) opts="--key --to --jobs --dry-run --report --allow-rollback --keep-registry --state-dir --create-projects --public" ;;
	cache)
		if ((COMP_CWORD == i + 1)); then
			COMPREPLY=($(compgen -W "prune clear" -- "$cur"))
			return
		fi
		opts="--older-than --cache" ;;
	help) COMPREPLY=($(compgen -W "$commands" -- "$cur")); return ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts $common" -- "$cur"))
	else
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}
complete -o filenames -F _ferry ferry
