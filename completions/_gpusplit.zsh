
#compdef gpusplit

_gpusplit_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _GPUSPLIT_COMPLETE=complete_zsh gpusplit)
}

compdef _gpusplit_completion gpusplit

