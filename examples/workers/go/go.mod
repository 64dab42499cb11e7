module runsd.example/primes

go 1.19
