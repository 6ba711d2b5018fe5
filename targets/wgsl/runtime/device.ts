// Opening a GPUDevice from an adapter, the same in browsers and in Node: ask for the adapter's own
// limits (browsers otherwise cap a storage binding at 128 MiB), and pick the kernel variant.
import type { Variant } from '../kernel.js';

export interface OpenedDevice {
  device: GPUDevice;
  adapter: GPUAdapter;
  variant: Variant;
  /** Adapter in words, for messages and benchmarks. */
  description: string;
}

/** CPU adapters (SwiftShader, llvmpipe, WARP) get the barrier-free kernels; MOCC_WGSL_VARIANT overrides. */
export function adapterVariant(adapter: GPUAdapter): Variant {
  const env = typeof process !== 'undefined' ? process.env?.MOCC_WGSL_VARIANT : undefined;
  if (env === 'cpu' || env === 'gpu') return env;
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  if (info.isFallbackAdapter) return 'cpu';
  const words = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`;
  return /swiftshader|llvmpipe|lavapipe|microsoft basic render|warp/i.test(words) ? 'cpu' : 'gpu';
}

export async function openDevice(adapter: GPUAdapter): Promise<OpenedDevice> {
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    // GPU-side timing for benchmarks, where the adapter has it
    requiredFeatures: adapter.features.has('timestamp-query') ? ['timestamp-query'] : [],
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    },
  });
  const i = adapter.info;
  const description = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' / ') || 'unknown adapter';
  return { device, adapter, variant: adapterVariant(adapter), description };
}
