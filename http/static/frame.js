// Batches DOM writes: any number of changes within a frame cause one render, in the next
// animation frame (a burst of 200 events a second paints at most once per frame).

/**
 * @param {() => void} render
 * @returns {() => void} call after changing the state; render runs once, before the next paint
 */
export function frameScheduler(render) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      render();
    });
  };
}
