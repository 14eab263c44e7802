from gateway.loadtest.cli import main

main()
