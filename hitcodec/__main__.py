from hitcodec.cli import main

main()
