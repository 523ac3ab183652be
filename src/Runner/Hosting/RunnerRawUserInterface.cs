using System.Management.Automation.Host;

namespace LoraPS.Runner.Hosting;

/// <summary>
/// The minimal raw console PowerShell's formatter needs: mainly the width tables are fitted to. There is no
/// screen buffer; operations that need one say so.
/// </summary>
public sealed class RunnerRawUserInterface(Terminal terminal) : PSHostRawUserInterface
{
    // Sentinels, not real colours: Write-Host without -ForegroundColor passes these back and they mean "as is".
    internal const ConsoleColor DefaultForeground = (ConsoleColor)(-1);
    internal const ConsoleColor DefaultBackground = (ConsoleColor)(-1);

    public override ConsoleColor ForegroundColor { get; set; } = DefaultForeground;
    public override ConsoleColor BackgroundColor { get; set; } = DefaultBackground;
    public override Size BufferSize { get => new(terminal.Width, 9999); set { } }
    public override Size WindowSize { get => new(terminal.Width, 50); set { } }
    public override Size MaxWindowSize => WindowSize;
    public override Size MaxPhysicalWindowSize => WindowSize;
    public override Coordinates CursorPosition { get; set; }
    public override Coordinates WindowPosition { get; set; }
    public override int CursorSize { get; set; } = 25;
    public override string WindowTitle { get; set; } = "loraps";
    public override bool KeyAvailable => !Console.IsInputRedirected && Console.KeyAvailable;
    public override void FlushInputBuffer() { }

    public override KeyInfo ReadKey(ReadKeyOptions options)
    {
        if (Console.IsInputRedirected) throw new NotSupportedException("ReadKey needs an interactive terminal; standard input is redirected.");
        var key = Console.ReadKey(intercept: (options & ReadKeyOptions.NoEcho) != 0);
        return new KeyInfo((int)key.Key, key.KeyChar, default, keyDown: true);
    }

    public override BufferCell[,] GetBufferContents(Rectangle rectangle) =>
        throw new NotSupportedException("The loraps host has no screen buffer to read.");
    public override void ScrollBufferContents(Rectangle source, Coordinates destination, Rectangle clip, BufferCell fill) { }
    public override void SetBufferContents(Coordinates origin, BufferCell[,] contents) { }
    public override void SetBufferContents(Rectangle rectangle, BufferCell fill) { }
}
