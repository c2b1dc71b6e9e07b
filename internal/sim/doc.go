// Package sim runs simulated partners for tests, the demo and the benchmark:
// real HTTPS servers on loopback that require and verify client certificates,
// like the AMC side does. The AMC directory answers the SOAP 1.1 "search"
// operation of the public city-practice sample; the AMC service answers an
// IDB-style (rights check) request. The AMC services' real message formats
// are not public: the service's namespace and elements are this simulator's.
//
// It must never be used to serve real traffic.
package sim
