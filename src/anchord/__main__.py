from anchord.cli import main

main()
