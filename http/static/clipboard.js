// Copies text the server has yet to send without losing the click's user activation: Safari
// and Firefox refuse a clipboard write made after an await on the network, so the write starts
// at once with a ClipboardItem whose text is a promise. Where there is no ClipboardItem the
// text is awaited and written (Chromium allows that); where there is no clipboard at all
// (plain http off localhost is no secure context) it says so.

/**
 * @param {Promise<string>} text
 * @returns {Promise<string>} what happened, for people ("" when copied)
 * @throws {unknown} the text's own failure (the server's Problem), as it was thrown
 */
export async function copyLater(text) {
  /** @type {Clipboard | undefined} */
  const clipboard = navigator.clipboard;
  if (!clipboard) {
    text.catch(() => {}); // nobody waits for it now
    return "Clipboard not available here (the page needs https or localhost).";
  }
  const failure = text.then(
    () => null,
    (error) => /** @type {{error: unknown}} */ ({ error }),
  );
  try {
    if (typeof ClipboardItem === "function" && typeof clipboard.write === "function") {
      const blob = text.then((value) => new Blob([value], { type: "text/plain" }));
      await clipboard.write([new ClipboardItem({ "text/plain": blob })]);
    } else {
      await clipboard.writeText(await text);
    }
    return "";
  } catch (error) {
    const failed = await failure;
    if (failed) throw failed.error; // the server's answer, not the clipboard's, went wrong
    // an engine whose ClipboardItem takes no promise: the text is here now, write it plainly
    try {
      await clipboard.writeText(await text);
      return "";
    } catch (again) {
      return `The clipboard refused it: ${again instanceof Error ? again.message : String(again)}`;
    }
  }
}
