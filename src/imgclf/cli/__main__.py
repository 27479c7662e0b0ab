from imgclf.cli import main

main()
