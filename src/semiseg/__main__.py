from semiseg.cli import main

main()
