// Whether a Vulkan device is there for the Vulkan tests: null, or why not (they skip saying so).
// Mesa's lavapipe counts (ggml lists CPU-type Vulkan devices only when GGML_VK_VISIBLE_DEVICES
// names them, which the test files set before anything loads ggml).
import { listDevices } from '../../electron/lab/engine/backend.js';

export function vulkanUnavailable(): string | null {
  try {
    return listDevices().some((d) => d.kind === 'vulkan') ? null : 'no Vulkan device (install mesa-vulkan-drivers for a CPU one)';
  } catch (e) {
    return (e as Error).message;
  }
}
