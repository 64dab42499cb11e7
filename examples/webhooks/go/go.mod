module runsd.example/receiver

go 1.19
