// libp2p 3.x (and yamux, noise, it-queue, ...) call Promise.withResolvers,
// which Node 20 lacks (it arrived in Node 22). This module must be the first
// import of every entry script so it runs before any libp2p module loads.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve
      let reject
      const promise = new this((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
