from imagepack.cli import main

main()
