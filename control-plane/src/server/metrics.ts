/**
 * The control plane's Prometheus metrics (INTERFACES.md names), on its own registry so a test can
 * run several replicas in one process.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export interface ControlPlaneMetrics {
  registry: Registry;
  proxiesConnected: Gauge;
  pushDuration: Histogram;
  convergence: Histogram;
  nacks: Counter;
  staleRequests: Counter;
  pushes: Counter;
}

export function createControlPlaneMetrics(replica: string): ControlPlaneMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ replica });
  return {
    registry,
    proxiesConnected: new Gauge({
      name: "trellis_cp_proxies_connected",
      help: "Proxies with an open discovery stream to this replica.",
      registers: [registry],
    }),
    pushDuration: new Histogram({
      name: "trellis_cp_push_duration_seconds",
      help: "Time to build and send one proxy's changed resources (only pushes that sent something).",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    convergence: new Histogram({
      name: "trellis_cp_convergence_seconds",
      help: "Time from a store change to the push of every affected proxy.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    nacks: new Counter({
      name: "trellis_cp_nacks_total",
      help: "Responses that proxies rejected (NACK).",
      registers: [registry],
    }),
    staleRequests: new Counter({
      name: "trellis_cp_stale_requests_total",
      help: "Discovery requests ignored because their nonce was stale.",
      registers: [registry],
    }),
    pushes: new Counter({
      name: "trellis_cp_pushes_total",
      help: "Discovery responses sent.",
      registers: [registry],
    }),
  };
}
