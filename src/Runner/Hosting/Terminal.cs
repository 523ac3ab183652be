using System.Text.RegularExpressions;

namespace LoraPS.Runner.Hosting;

/// <summary>
/// What the process's standard streams are connected to. Colours and the live progress line are only for
/// terminals; redirected output gets plain text, so logs and pipes never see escape sequences.
/// </summary>
public sealed class Terminal
{
    public TextWriter Out { get; }
    public TextWriter Error { get; }
    public bool OutIsTerminal { get; }
    public bool ErrorIsTerminal { get; }

    /// <summary>True when colours are allowed at all (NO_COLOR unset and TERM is not "dumb").</summary>
    public bool ColorAllowed { get; }

    public Terminal(TextWriter output, TextWriter error, bool outIsTerminal, bool errorIsTerminal)
    {
        Out = output;
        Error = error;
        OutIsTerminal = outIsTerminal;
        ErrorIsTerminal = errorIsTerminal;
        ColorAllowed = string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR")) &&
                       Environment.GetEnvironmentVariable("TERM") != "dumb";
    }

    /// <summary>The process console, with UTF-8 writers that flush each write (output interleaves with stderr).</summary>
    public static Terminal FromConsole()
    {
        var utf8 = new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
        var output = new StreamWriter(Console.OpenStandardOutput(), utf8) { AutoFlush = true };
        var error = new StreamWriter(Console.OpenStandardError(), utf8) { AutoFlush = true };
        return new Terminal(output, error, !Console.IsOutputRedirected, !Console.IsErrorRedirected);
    }

    /// <summary>Columns for formatting: the terminal's width, else $COLUMNS, else 120 (what pwsh uses when redirected).</summary>
    public int Width
    {
        get
        {
            if (OutIsTerminal)
            {
                try { if (Console.WindowWidth > 0) return Console.WindowWidth; } catch (IOException) { }
            }
            return int.TryParse(Environment.GetEnvironmentVariable("COLUMNS"), out int columns) && columns > 0 ? columns : 120;
        }
    }

    public bool StdoutColor => OutIsTerminal && ColorAllowed;
    public bool StderrColor => ErrorIsTerminal && ColorAllowed;

    static readonly Regex Escape = new(@"\x1b\[[0-?]*[ -/]*[@-~]", RegexOptions.Compiled);

    /// <summary>Removes ANSI escape sequences (PowerShell's table headers and error views contain them).</summary>
    public static string StripAnsi(string text) => text.Contains('\x1b') ? Escape.Replace(text, "") : text;

    /// <summary>SGR code for a console colour, e.g. Red → "\x1b[91m".</summary>
    public static string Sgr(ConsoleColor color, bool background = false)
    {
        int[] codes = { 30, 34, 32, 36, 31, 35, 33, 37, 90, 94, 92, 96, 91, 95, 93, 97 };
        return $"\x1b[{codes[(int)color] + (background ? 10 : 0)}m";
    }

    public const string Reset = "\x1b[0m";
}
